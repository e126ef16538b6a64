"""The ViT: DINO/timm parameter names, a forward pass checked against plain tensor algebra, seeding."""

from __future__ import annotations

import math

import pytest
import torch

from workflow_scripts.dino.vit import ARCHS, VisionTransformer, build_vit


def dino_parameter_names(depth: int) -> set[str]:
    """The parameter names of DINO's (and timm's) ``VisionTransformer`` without head."""
    names = {"cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias", "norm.weight", "norm.bias"}
    for i in range(depth):
        for layer in ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2"):
            names |= {f"blocks.{i}.{layer}.weight", f"blocks.{i}.{layer}.bias"}
    return names


def layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + 1e-6) * weight + bias


def reference_forward(state: dict[str, torch.Tensor], x: torch.Tensor, heads: int) -> torch.Tensor:
    """ViT forward written out with matrix products, softmax and erf-GELU, from the weights alone."""
    w = {k: v.double() for k, v in state.items()}
    x = x.double()
    patches = x.unfold(2, 16, 16).unfold(3, 16, 16)  # (B, C, 14, 14, 16, 16)
    patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(x.shape[0], 196, -1)
    proj = w["patch_embed.proj.weight"].reshape(w["patch_embed.proj.weight"].shape[0], -1)
    tokens = patches @ proj.T + w["patch_embed.proj.bias"]
    tokens = torch.cat([w["cls_token"].expand(x.shape[0], -1, -1), tokens], 1) + w["pos_embed"]
    dim = tokens.shape[-1]
    depth = 1 + max(int(k.split(".")[1]) for k in w if k.startswith("blocks."))
    for i in range(depth):
        p = f"blocks.{i}."
        h = layer_norm(tokens, w[p + "norm1.weight"], w[p + "norm1.bias"])
        q, k, v = (h @ w[p + "attn.qkv.weight"].T + w[p + "attn.qkv.bias"]).split(dim, -1)
        split = lambda t: t.reshape(t.shape[0], t.shape[1], heads, dim // heads).transpose(1, 2)  # noqa: E731
        scores = split(q) @ split(k).transpose(-1, -2) / math.sqrt(dim // heads)
        attended = (scores.softmax(-1) @ split(v)).transpose(1, 2).reshape(tokens.shape)
        tokens = tokens + attended @ w[p + "attn.proj.weight"].T + w[p + "attn.proj.bias"]
        h = layer_norm(tokens, w[p + "norm2.weight"], w[p + "norm2.bias"])
        h = h @ w[p + "mlp.fc1.weight"].T + w[p + "mlp.fc1.bias"]
        h = 0.5 * h * (1 + torch.erf(h / math.sqrt(2)))
        tokens = tokens + h @ w[p + "mlp.fc2.weight"].T + w[p + "mlp.fc2.bias"]
    return layer_norm(tokens, w["norm.weight"], w["norm.bias"])[:, 0]


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_parameter_names_and_shapes_match_dino(arch):
    spec = ARCHS[arch]
    with torch.device("meta"):
        state = VisionTransformer(spec).state_dict()
    assert set(state) == dino_parameter_names(spec.depth)
    assert state["patch_embed.proj.weight"].shape == (spec.embed_dim, 5, 16, 16)
    assert state["pos_embed"].shape == (1, 197, spec.embed_dim)
    assert state["blocks.0.attn.qkv.weight"].shape == (3 * spec.embed_dim, spec.embed_dim)


def test_forward_matches_plain_tensor_algebra():
    model = build_vit("vit_small", seed=3)
    x = torch.randn(2, 5, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        out = model(x)
    expected = reference_forward(model.state_dict(), x, heads=ARCHS["vit_small"].num_heads)
    assert out.shape == (2, 384)
    torch.testing.assert_close(out.double(), expected, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(out[0], out[1], atol=1e-2), "different crops must give different embeddings"


def test_random_weights_are_reproducible_and_leave_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    first = build_vit("vit_small").state_dict()
    after = torch.rand(1)
    second = build_vit("vit_small").state_dict()
    other_seed = build_vit("vit_small", seed=1).state_dict()
    assert torch.equal(before, after)
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not torch.equal(first["blocks.0.attn.qkv.weight"], other_seed["blocks.0.attn.qkv.weight"])


def test_unknown_architecture_is_named():
    with pytest.raises(ValueError, match="vit_huge"):
        build_vit("vit_huge")
