"""Checkpoints: DINO and bare formats, strict loading, sha256, s3:// download through a real S3 server."""

from __future__ import annotations

import copy
import hashlib

import pytest
import torch

from workflow_scripts.dino.checkpoint import CheckpointError, load_checkpoint, resolve_checkpoint
from workflow_scripts.dino.model import prepare_model
from workflow_scripts.dino.vit import ARCHS, VisionTransformer, build_vit
from workflow_scripts.paths import cache_path


def dino_training_checkpoint(model: torch.nn.Module) -> dict:
    """A checkpoint laid out as DINO's training loop saves it: teacher with head, DDP student, epoch.

    The student is abridged to two tensors: it only has to be present and ignored.
    """
    backbone = model.state_dict()
    head = {"head.mlp.0.weight": torch.randn(2048, 384), "head.last_layer.weight_g": torch.ones(4096, 1)}
    return {
        "teacher": {**{f"backbone.{k}": v for k, v in backbone.items()}, **head},
        "student": {f"module.backbone.{k}": torch.zeros_like(backbone[k]) for k in ("cls_token", "norm.weight")},
        "epoch": 100,
    }


def outputs(model: torch.nn.Module, crops: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model(crops)


@pytest.fixture(scope="module")
def trained():
    """A 'trained' model (seed 7), a crop batch and its embeddings."""
    model = build_vit("vit_small", seed=7)
    crops = torch.randn(1, 5, 224, 224, generator=torch.Generator().manual_seed(0))
    return model, crops, outputs(model, crops)


@pytest.fixture(scope="module")
def untrained():
    return build_vit("vit_small", seed=0)


@pytest.fixture
def fresh(untrained):
    """A model whose weights differ from ``trained``, private to the test."""
    return copy.deepcopy(untrained)


def meta_vit(arch: str, in_chans: int = 5) -> VisionTransformer:
    """A ViT without storage: enough to check a checkpoint's names and shapes."""
    with torch.device("meta"):
        return VisionTransformer(ARCHS[arch], in_chans=in_chans)


@pytest.mark.parametrize(
    "layout",
    [
        pytest.param(dino_training_checkpoint, id="dino-teacher"),
        pytest.param(
            lambda m: {"teacher": {f"module.backbone.{k}": v for k, v in m.state_dict().items()}}, id="module-prefix"
        ),
        pytest.param(lambda m: dict(m.state_dict()), id="bare-state-dict"),
    ],
)
def test_round_trip_gives_identical_outputs(tmp_path, trained, fresh, layout):
    model, crops, expected = trained
    path = tmp_path / "checkpoint.pth"
    torch.save(layout(model), path)
    assert not torch.equal(outputs(fresh, crops), expected)
    load_checkpoint(fresh, path)
    assert torch.equal(outputs(fresh, crops), expected)


def test_missing_and_unexpected_keys_are_listed(tmp_path, trained):
    state = dict(trained[0].state_dict())
    del state["blocks.3.mlp.fc2.bias"]
    state["blocks.12.norm1.weight"] = torch.ones(384)
    path = tmp_path / "broken.pth"
    torch.save({"teacher": {f"backbone.{k}": v for k, v in state.items()}}, path)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(meta_vit("vit_small"), path)
    message = str(error.value)
    assert "missing keys: blocks.3.mlp.fc2.bias" in message
    assert "unexpected keys: blocks.12.norm1.weight" in message
    assert str(path) in message


def test_wrong_architecture_is_refused(tmp_path):
    path = tmp_path / "three_channel.pth"
    torch.save({k: torch.zeros(v.shape) for k, v in meta_vit("vit_small", in_chans=3).state_dict().items()}, path)
    with pytest.raises(CheckpointError, match=r"patch_embed.proj.weight \(384, 3, 16, 16\) != \(384, 5, 16, 16\)"):
        load_checkpoint(meta_vit("vit_small"), path)
    with pytest.raises(CheckpointError, match=r"cls_token \(1, 1, 384\) != \(1, 1, 768\)"):
        load_checkpoint(meta_vit("vit_base"), path)


class NotWeights:
    """An arbitrary object: loading it would need to run pickled code."""


def test_pickled_objects_are_not_executed(tmp_path):
    path = tmp_path / "object.pth"
    torch.save({"teacher": NotWeights()}, path)
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_checkpoint(meta_vit("vit_small"), path)


def test_random_weights_need_explicit_permission():
    with pytest.raises(ValueError, match="allow random weights"):
        prepare_model("vit_small", 5, None, allow_random_weights=False)
    _, info = prepare_model("vit_small", 5, None, allow_random_weights=True)
    assert "random weights" in info.label
    assert info.as_dict()["model"] == "random weights"
    assert info.sha256 is None


def test_missing_local_checkpoint_is_named(tmp_path):
    with pytest.raises(CheckpointError, match="nothing.pth"):
        resolve_checkpoint(str(tmp_path / "nothing.pth"), None)


def test_s3_checkpoint_is_downloaded_once_and_hashed(tmp_path, trained, s3_server):
    model, _, _ = trained
    local = tmp_path / "dino.pth"
    torch.save(dino_training_checkpoint(model), local)
    client = s3_server.admin_client()
    client.create_bucket(Bucket="models", ACL="public-read")
    client.put_object(Bucket="models", Key="dino/vits16.pth", Body=local.read_bytes(), ACL="public-read")
    cache = tmp_path / "cache"
    uri = "s3://models/dino/vits16.pth"

    loaded, info = prepare_model("vit_small", 5, uri, False, cache, s3_server.endpoint_url, anonymous=True)

    target = cache_path(cache, "models", "dino/vits16.pth")
    assert target.read_bytes() == local.read_bytes()
    assert info.sha256 == hashlib.sha256(local.read_bytes()).hexdigest()
    assert info.sha256 in info.label and info.checkpoint == uri
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in loaded.state_dict().items())
    mtime = target.stat().st_mtime_ns
    assert resolve_checkpoint(uri, cache, s3_server.endpoint_url) == target
    assert target.stat().st_mtime_ns == mtime, "a complete cached copy is reused"
    assert not list(target.parent.glob(".*.part*"))


def test_s3_checkpoint_without_cache_or_object_is_an_error(tmp_path, s3_server):
    with pytest.raises(CheckpointError, match="cache directory"):
        resolve_checkpoint("s3://models/x.pth", None, s3_server.endpoint_url)
    s3_server.admin_client().create_bucket(Bucket="empty-models", ACL="public-read")
    with pytest.raises(CheckpointError, match="s3://empty-models/absent.pth"):
        resolve_checkpoint("s3://empty-models/absent.pth", tmp_path, s3_server.endpoint_url)
