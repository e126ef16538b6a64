"""Model weights: where they come from, what they are, and strict loading.

A DINO training checkpoint holds ``teacher`` (and ``student``) weights with
``backbone.*`` and ``head.*`` keys, sometimes behind a ``module.`` prefix from
DistributedDataParallel; the teacher backbone is the model used for
inference. A bare state dict of the backbone loads too. Loading is strict:
a checkpoint that does not fit the architecture exactly is an error, never a
silently half-initialised model.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
from pathlib import Path

import torch
from torch import nn

from workflow_scripts.errors import InputError
from workflow_scripts.fetch.objects import FetchError, download_objects
from workflow_scripts.fetch.s3 import make_client, parse_s3_url

log = logging.getLogger(__name__)

STRIPPED_PREFIXES = ("module.", "backbone.")
DROPPED_PREFIX = "head."


class CheckpointError(InputError):
    """A checkpoint that cannot be loaded; the message names the file and keys."""


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, recorded with every output so results name their weights."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_s3_checkpoint(
    uri: str, cache_dir: str | Path, endpoint_url: str | None = None, anonymous: bool = True
) -> Path:
    """Local copy of an ``s3://`` checkpoint under the shared cache layout.

    Fetched by the workflow's download engine, so a copy is verified before
    it is used, an interrupted download is never taken for the checkpoint,
    and a complete one is not requested again.
    """
    location = parse_s3_url(uri)
    try:
        (record,) = download_objects(make_client(endpoint_url, anonymous), [location], cache_dir, concurrency=1)
    except FetchError as error:
        raise CheckpointError(f"checkpoint {uri}: cannot read from S3: {error}") from error
    log.info("checkpoint %s: %s (%d bytes)", uri, record.path, record.size)
    return record.path


def resolve_checkpoint(
    checkpoint: str,
    cache_dir: str | Path | None,
    endpoint_url: str | None = None,
    anonymous: bool = True,
) -> Path:
    """A local path for ``checkpoint``, downloading it first when it is an ``s3://`` URI."""
    if checkpoint.startswith("s3://"):
        if cache_dir is None:
            raise CheckpointError(f"checkpoint {checkpoint}: an s3:// checkpoint needs a cache directory")
        return download_s3_checkpoint(checkpoint, cache_dir, endpoint_url, anonymous)
    path = Path(checkpoint)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {checkpoint}: no such file")
    return path


def _strip_prefix(key: str) -> str:
    for prefix in STRIPPED_PREFIXES:
        key = key.removeprefix(prefix)
    return key


def backbone_state_dict(raw: object, name: str) -> dict[str, torch.Tensor]:
    """The backbone weights inside a loaded checkpoint object, with prefixes removed.

    ``teacher`` wins when present (DINO's evaluation weights); ``head.*``
    (the DINO projection head) is dropped. A NaN or infinite weight is an
    error here: it would give NaN embeddings, which surface much later as
    features without spread.
    """
    expected = "expected a state dict of tensors, or a dict with 'teacher' holding one"
    if isinstance(raw, dict) and "teacher" in raw:
        raw = raw["teacher"]
    if not isinstance(raw, dict) or not raw:
        raise CheckpointError(f"checkpoint {name}: {expected}; found {type(raw).__name__}")
    state: dict[str, torch.Tensor] = {}
    for key, value in raw.items():
        if not isinstance(value, torch.Tensor):
            keys = ", ".join(map(str, list(raw)[:5]))
            raise CheckpointError(
                f"checkpoint {name}: {expected}; entry {key!r} is a {type(value).__name__} (keys: {keys})"
            )
        stripped = _strip_prefix(str(key))
        if stripped.startswith(DROPPED_PREFIX):
            continue
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise CheckpointError(f"checkpoint {name}: tensor {key!r} holds NaN or infinite values")
        state[stripped] = value
    return state


def check_state_dict(model: nn.Module, state: dict[str, torch.Tensor], name: str) -> None:
    """Raise, listing every offending key, unless ``state`` fits ``model`` exactly."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = sorted(
        f"{key} {tuple(state[key].shape)} != {tuple(expected[key].shape)}"
        for key in set(state) & set(expected)
        if state[key].shape != expected[key].shape
    )
    problems = [
        f"{label}: {', '.join(keys)}"
        for label, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", mismatched))
        if keys
    ]
    if problems:
        raise CheckpointError(f"checkpoint {name} does not fit the model; " + "; ".join(problems))


def load_checkpoint(model: nn.Module, path: str | Path) -> None:
    """Load a DINO checkpoint or bare state dict into ``model``, strictly.

    ``weights_only=True`` keeps ``torch.load`` from running code stored in
    the file.
    """
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"checkpoint {path}: cannot be read: refused by torch.load(weights_only=True), which never runs code "
            f"from a file ({_refusal(error)}); a checkpoint holds only tensors in dicts, as "
            "torch.save(model.state_dict(), path) writes them"
        ) from error
    except Exception as error:  # torch raises several unrelated types for unreadable files
        raise CheckpointError(f"checkpoint {path}: cannot be read: {error}") from error
    state = backbone_state_dict(raw, str(path))
    check_state_dict(model, state, str(path))
    model.load_state_dict(state, strict=True)


def _refusal(error: pickle.UnpicklingError) -> str:
    """The line of torch's weights-only refusal that says what was refused.

    The rest of torch's message suggests ``weights_only=False``, which this
    workflow never does.
    """
    lines = [line.strip() for line in str(error).splitlines() if "nsupported" in line]
    if not lines:
        return "not a weights-only file"
    return lines[0].removeprefix("WeightsUnpickler error:").strip().split(". ")[0].rstrip(".")
