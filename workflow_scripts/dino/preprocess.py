"""The CellPaintSSL preprocessing recipe in torch, batched over fields.

Everything runs on the tensor's device, so on a GPU node the pixels never go
back to the host between the read and the model. Each step reproduces the
numpy/scikit-image semantics of the original recipe (numpy's linear
percentiles, scikit-image's 256-bin Otsu), so the embeddings match a
straightforward numpy implementation.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch

from workflow_scripts.errors import InputError

UINT16_MAX = 65535.0
DEFAULT_CHANNELS = ("Mito", "AGP", "RNA", "ER", "DNA")
# Per-channel statistics of the CellPaintSSL inference set, in DEFAULT_CHANNELS order.
DEFAULT_MEAN = (0.12528631, 0.17596765, 0.14736995, 0.13445823, 0.08349566)
DEFAULT_STD = (0.12594905, 0.15605405, 0.16031352, 0.15751939, 0.15773378)
NORMALIZATIONS = ("dataset", "self")
DEFAULT_STATISTICS = dict(zip(DEFAULT_CHANNELS, zip(DEFAULT_MEAN, DEFAULT_STD, strict=True), strict=True))
AGGREGATIONS = ("mean", "median")


@dataclass(frozen=True)
class Recipe:
    """Every parameter of the recipe; stored with the outputs so they can be reproduced."""

    channels: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    normalization: str
    aggregation: str
    crop_size: int = 224
    clip_percentiles: tuple[float, float] = (0.1, 99.9)
    otsu_step: int = 10
    otsu_bins: int = 256
    foreground_channel: str = "DNA"
    foreground_factor: float = 0.7
    min_foreground_fraction: float = 0.01

    @classmethod
    def from_config(cls, embedding: dict[str, Any]) -> Recipe:
        """The recipe of the config's ``embedding`` section; no mean/std means CellPaintSSL's, by stain."""
        channels = tuple(embedding["channels"])
        if (embedding["mean"] is None) != (embedding["std"] is None):
            raise InputError("config keys embedding.mean and embedding.std go together: give both or neither")
        if embedding["mean"] is None:
            mean, std = default_statistics(channels)
        else:
            mean, std = tuple(embedding["mean"]), tuple(embedding["std"])
        return cls(channels, mean, std, embedding["normalization"], embedding["aggregation"])

    def __post_init__(self) -> None:
        if len(set(self.channels)) != len(self.channels):
            raise InputError(f"recipe channels repeat a name: {list(self.channels)}")
        if not len(self.mean) == len(self.std) == len(self.channels):
            raise InputError(
                f"recipe needs one mean and one std per channel {list(self.channels)}; "
                f"got {len(self.mean)} means and {len(self.std)} stds"
            )
        if any(s <= 0 for s in self.std):
            raise InputError(f"recipe stds must be positive: {list(self.std)}")
        if self.normalization not in NORMALIZATIONS:
            raise InputError(f"normalization {self.normalization!r} is not one of {NORMALIZATIONS}")
        if self.aggregation not in AGGREGATIONS:
            raise InputError(f"aggregation {self.aggregation!r} is not one of {AGGREGATIONS}")
        if self.foreground_channel not in self.channels:
            raise InputError(f"foreground channel {self.foreground_channel!r} is not in {list(self.channels)}")

    @property
    def foreground_index(self) -> int:
        return self.channels.index(self.foreground_channel)

    def as_dict(self) -> dict:
        return asdict(self)


def default_statistics(channels: tuple[str, ...]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The CellPaintSSL means and stds looked up by stain, for any channel order."""
    unknown = [name for name in channels if name not in DEFAULT_STATISTICS]
    if unknown:
        raise InputError(f"no default mean/std for channel(s) {unknown}; give them explicitly")
    mean, std = zip(*(DEFAULT_STATISTICS[name] for name in channels), strict=True)
    return tuple(mean), tuple(std)


@dataclass
class PreparedFields:
    """The model-ready crops of a batch of fields and what the recipe decided per field.

    ``usable`` is False for a field with a constant channel (zero-filled,
    blank): percentile rescaling is undefined there, so it yields no crops.
    """

    crops: torch.Tensor  # (K, C, s, s) float32, normalised
    crop_field: torch.Tensor  # (K,) int64: index of the crop's field within the batch
    n_crops: int  # crops in the grid of one field
    n_kept: torch.Tensor  # (B,) int64
    otsu: torch.Tensor  # (B,) float64
    usable: torch.Tensor  # (B,) bool
    constant_channels: torch.Tensor  # (B, C) bool


def linear_percentile(values: torch.Tensor, percent: float) -> torch.Tensor:
    """``numpy.percentile(values, percent, axis=-1)`` with numpy's default linear method.

    Only the order statistics next to the percentile are needed, so a
    ``topk`` from the nearer end replaces a full sort (and ``torch.quantile``'s
    16M-element limit).
    """
    n = values.shape[-1]
    virtual = (n - 1) * (percent / 100.0)
    below = math.floor(virtual)
    above = min(below + 1, n - 1)
    gamma = virtual - below
    if above < n - 1 - below:
        smallest = torch.topk(values, above + 1, dim=-1, largest=False, sorted=True).values
        low, high = smallest[..., below], smallest[..., above]
    else:
        largest = torch.topk(values, n - below, dim=-1, largest=True, sorted=True).values
        low, high = largest[..., n - 1 - below], largest[..., n - 1 - above]
    diff = high - low
    return low + diff * gamma if gamma < 0.5 else high - diff * (1 - gamma)


def clip_and_rescale(fields: torch.Tensor, percentiles: tuple[float, float]) -> tuple[torch.Tensor, torch.Tensor]:
    """Clip each channel of each field at its percentiles and rescale it to [0, 1].

    Returns the rescaled fields and a (B, C) mask of channels whose two
    percentiles coincide, where the rescaling is undefined (their pixels
    are set to 0 and the caller must not use them).
    """
    batch, channels = fields.shape[:2]
    flat = fields.reshape(batch, channels, -1)
    low = linear_percentile(flat, percentiles[0])[..., None, None]
    high = linear_percentile(flat, percentiles[1])[..., None, None]
    constant = (high <= low)[..., 0, 0]
    span = torch.where(high > low, high - low, torch.ones_like(high))
    return (fields.clamp(min=low, max=high) - low) / span, constant


def otsu_thresholds(values: torch.Tensor, nbins: int = 256) -> torch.Tensor:
    """Per row of ``values`` (B, n), ``skimage.filters.threshold_otsu(row, nbins)``.

    Bins span each row's min..max and pixels are assigned exactly as
    ``numpy.histogram`` does (with its edge corrections), so results agree
    with scikit-image bit for bit on float64 input.
    """
    values = values.to(torch.float64)
    first = values.amin(dim=1, keepdim=True)
    last = values.amax(dim=1, keepdim=True)
    flat = last == first
    span = torch.where(flat, torch.ones_like(last), last - first)
    steps = torch.arange(nbins + 1, dtype=torch.float64, device=values.device)
    edges = steps * (span / nbins) + first
    edges[:, -1:] = torch.where(flat, edges[:, -1:], last)
    index = ((values - first) / span * nbins).to(torch.int64).clamp(max=nbins - 1)
    index = index - (values < edges.gather(1, index)).to(torch.int64)
    index = index + ((values >= edges.gather(1, index + 1)) & (index != nbins - 1)).to(torch.int64)
    counts = torch.zeros(values.shape[0], nbins, dtype=torch.float64, device=values.device)
    counts.scatter_add_(1, index, torch.ones_like(values))
    centers = (edges[:, :-1] + edges[:, 1:]) / 2
    weight1 = counts.cumsum(1)
    weight2 = counts.flip(1).cumsum(1).flip(1)
    mean1 = (counts * centers).cumsum(1) / weight1
    mean2 = (counts * centers).flip(1).cumsum(1).flip(1) / weight2
    variance = weight1[:, :-1] * weight2[:, 1:] * (mean1[:, :-1] - mean2[:, 1:]) ** 2
    best = centers.gather(1, variance.argmax(dim=1, keepdim=True))[:, 0]
    return torch.where(flat[:, 0], first[:, 0], best)


def crop_grid(fields: torch.Tensor, size: int) -> torch.Tensor:
    """Non-overlapping ``size`` crops from the top-left corner, row-major: (B, n, C, s, s).

    The remainder at the right and bottom edges is dropped.
    """
    batch, channels, height, width = fields.shape
    rows, cols = height // size, width // size
    if rows == 0 or cols == 0:
        raise InputError(f"field of {height}×{width} pixels is smaller than one {size}-pixel crop")
    grid = fields[:, :, : rows * size, : cols * size].reshape(batch, channels, rows, size, cols, size)
    return grid.permute(0, 2, 4, 1, 3, 5).reshape(batch, rows * cols, channels, size, size)


def foreground_crops(
    foreground: torch.Tensor, thresholds: torch.Tensor, factor: float, min_fraction: float
) -> torch.Tensor:
    """(B, n) mask of crops whose foreground (> factor·threshold) covers ≥ min_fraction.

    A field with no such crop keeps its crop at index n//2, so every field
    contributes at least one crop.
    """
    batch, n = foreground.shape[:2]
    area = foreground.shape[-2] * foreground.shape[-1]
    cutoff = (factor * thresholds).to(foreground.dtype)[:, None, None, None]
    covered = (foreground > cutoff).sum(dim=(-2, -1))
    keep = covered >= min_fraction * area
    fallback = torch.zeros_like(keep)
    fallback[:, n // 2] = True
    return torch.where(keep.any(dim=1, keepdim=True), keep, fallback)


def _channel_statistics(fields: torch.Tensor, recipe: Recipe) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, C) means and stds used to normalise each field's crops."""
    if recipe.normalization == "self":
        flat = fields.reshape(*fields.shape[:2], -1)
        return flat.mean(dim=2), flat.std(dim=2, correction=0)
    mean = torch.tensor(recipe.mean, dtype=fields.dtype, device=fields.device)
    std = torch.tensor(recipe.std, dtype=fields.dtype, device=fields.device)
    return mean.expand(fields.shape[0], -1), std.expand(fields.shape[0], -1)


def prepare_fields(raw: torch.Tensor, recipe: Recipe) -> PreparedFields:
    """Run the recipe on a batch of equally sized fields (B, C, Y, X) in model channel order.

    ``raw`` holds the stored uint16 intensities (any numeric dtype). The
    boolean selection of kept crops is the one step that waits for the
    device.
    """
    fields, constant = clip_and_rescale(raw.to(torch.float32) / UINT16_MAX, recipe.clip_percentiles)
    usable = ~constant.any(dim=1)
    dna = fields[:, recipe.foreground_index, :: recipe.otsu_step, :: recipe.otsu_step]
    otsu = otsu_thresholds(dna.reshape(dna.shape[0], -1), recipe.otsu_bins)
    grid = crop_grid(fields, recipe.crop_size)
    keep = foreground_crops(
        grid[:, :, recipe.foreground_index], otsu, recipe.foreground_factor, recipe.min_foreground_fraction
    )
    keep &= usable[:, None]
    mean, std = _channel_statistics(fields, recipe)
    crop_field = keep.nonzero()[:, 0]
    crops = grid[keep]
    crops = (crops - mean[crop_field][..., None, None]) / std[crop_field][..., None, None]
    return PreparedFields(
        crops=crops,
        crop_field=crop_field,
        n_crops=grid.shape[1],
        n_kept=keep.sum(dim=1),
        otsu=otsu,
        usable=usable,
        constant_channels=constant,
    )
