"""A plain-PyTorch Vision Transformer for 5-channel Cell Painting crops.

Parameter names follow DINO's and timm's ``VisionTransformer``
(``patch_embed.proj``, ``cls_token``, ``pos_embed``, ``blocks.N.*``, ``norm``)
so their checkpoints load strictly without renaming; timm itself is not a
dependency because it cannot be installed beside the CPU build of torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from workflow_scripts.errors import InputError

PATCH_SIZE = 16
IMAGE_SIZE = 224
LAYER_NORM_EPS = 1e-6
RANDOM_WEIGHTS_SEED = 0


@dataclass(frozen=True)
class ArchSpec:
    """Width, depth and heads of one ViT size."""

    embed_dim: int
    depth: int
    num_heads: int


ARCHS: dict[str, ArchSpec] = {
    "vit_small": ArchSpec(embed_dim=384, depth=12, num_heads=6),
    "vit_base": ArchSpec(embed_dim=768, depth=12, num_heads=12),
}


class PatchEmbed(nn.Module):
    """Non-overlapping 16×16 patches projected to tokens by one strided convolution."""

    def __init__(self, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=PATCH_SIZE, stride=PATCH_SIZE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection, as DINO lays it out."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, dim // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))


class Mlp(nn.Module):
    """The two-layer GELU feed-forward block (hidden width 4× the embedding)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, dim * 4)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(dim * 4, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """A pre-norm transformer block."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.mlp = Mlp(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    """ViT whose forward returns the normalised CLS token, the DINO embedding."""

    def __init__(self, spec: ArchSpec, in_chans: int = 5, image_size: int = IMAGE_SIZE) -> None:
        super().__init__()
        num_patches = (image_size // PATCH_SIZE) ** 2
        self.in_chans = in_chans
        self.embed_dim = spec.embed_dim
        self.patch_embed = PatchEmbed(in_chans, spec.embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, spec.embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, spec.embed_dim))
        self.blocks = nn.ModuleList(Block(spec.embed_dim, spec.num_heads) for _ in range(spec.depth))
        self.norm = nn.LayerNorm(spec.embed_dim, eps=LAYER_NORM_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch_embed(x)
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        tokens = torch.cat([cls, tokens], dim=1) + self.pos_embed
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens)[:, 0]


def _init_like_dino(module: nn.Module) -> None:
    """DINO's initialisation: truncated normal (std 0.02) for linear layers and tokens."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, VisionTransformer):
        nn.init.trunc_normal_(module.cls_token, std=0.02)
        nn.init.trunc_normal_(module.pos_embed, std=0.02)


def build_vit(arch: str, in_chans: int = 5, seed: int = RANDOM_WEIGHTS_SEED) -> VisionTransformer:
    """A ViT of the named size, initialised reproducibly from ``seed``.

    The seed makes a run without a checkpoint ("random weights") repeatable;
    the global random state is left as it was.
    """
    if arch not in ARCHS:
        raise InputError(f"unknown ViT architecture {arch!r}; expected one of {sorted(ARCHS)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = VisionTransformer(ARCHS[arch], in_chans=in_chans)
        model.apply(_init_like_dino)
    return model.eval()
