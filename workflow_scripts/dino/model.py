"""The model an embedding run uses, and the description recorded with its outputs."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from workflow_scripts.dino.checkpoint import load_checkpoint, resolve_checkpoint, sha256_file
from workflow_scripts.dino.vit import RANDOM_WEIGHTS_SEED, VisionTransformer, build_vit
from workflow_scripts.errors import InputError

log = logging.getLogger(__name__)

RANDOM_WEIGHTS = "random weights"


@dataclass(frozen=True)
class ModelInfo:
    """Which weights produced the embeddings; ``label`` fills the ``Metadata_Model`` column."""

    arch: str
    checkpoint: str | None
    sha256: str | None

    @property
    def label(self) -> str:
        if self.sha256 is None:
            return f"{self.arch} {RANDOM_WEIGHTS} (seed {RANDOM_WEIGHTS_SEED})"
        return f"{self.arch} sha256:{self.sha256}"

    def as_dict(self) -> dict:
        return {
            "model": RANDOM_WEIGHTS if self.sha256 is None else "checkpoint",
            "arch": self.arch,
            "checkpoint": self.checkpoint,
            "checkpoint_sha256": self.sha256,
            "seed": RANDOM_WEIGHTS_SEED if self.sha256 is None else None,
        }


def prepare_model(
    arch: str,
    in_chans: int,
    checkpoint: str | None,
    allow_random_weights: bool,
    cache_dir: str | Path | None = None,
    endpoint_url: str | None = None,
    anonymous: bool = True,
) -> tuple[VisionTransformer, ModelInfo]:
    """Build the ViT and load its checkpoint.

    Without a checkpoint the run is refused unless random weights are
    explicitly allowed: embeddings from an untrained network must never be
    mistaken for real ones, so such runs are labelled everywhere.
    """
    model = build_vit(arch, in_chans=in_chans)
    if checkpoint is None:
        if not allow_random_weights:
            raise InputError(
                "no embedding checkpoint given; set one, or allow random weights explicitly "
                "(embeddings are then labelled 'random weights')"
            )
        log.warning("no checkpoint: embedding with %s (%s)", RANDOM_WEIGHTS, arch)
        return model, ModelInfo(arch, None, None)
    path = resolve_checkpoint(checkpoint, cache_dir, endpoint_url, anonymous)
    load_checkpoint(model, path)
    info = ModelInfo(arch, checkpoint, sha256_file(path))
    log.info("loaded checkpoint %s (sha256 %s)", checkpoint, info.sha256)
    return model, info
