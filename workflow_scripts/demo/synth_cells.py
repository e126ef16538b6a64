"""Cell geometry of a synthetic Cell Painting field: where cells are and what shape.

The layout (all randomness) is drawn first and kept apart from the drawing
(deterministic), so a phenotype changes the cells' parameters, never the way
they are painted. Cells are painted in local patches around each cell; a
pixel belongs to the cell whose nucleus covers it, else to the cell whose
normalised radius there is smallest, which tiles touching cells without
overlap, as confluent cells do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit

# Geometry of a DMSO U2OS cell at the JUMP Phenix resolution (0.598 µm/px),
# from the real source_4 field in ../shared/fixtures/jump-pixels: nuclei of
# 600-1400 px² (mean equivalent radius ~16.5 px), about 14 nuclei per 384²
# crop (~110 per 1080² field), cells covering ~60 % of the field.
CELLS_PER_1080_FIELD = 110.0
CELL_RADIUS_PX = 58.0
NUCLEUS_RADIUS_PX = 16.5
NUCLEUS_OFFSET_MAX_PX = 5.0
#: Relative amplitudes of the boundary harmonics k = 2..5 (elongation, lobes).
BOUNDARY_HARMONICS = np.array([0.22, 0.12, 0.08, 0.06])
MAX_NUCLEOLI = 4
GOLGI_BLOBS = 3
#: Soft edge width (px) of nuclei and cells: the optics blur a hard edge.
EDGE_PX = 1.0
#: Nuclei own a margin of this factor around them so no neighbour paints over them.
NUCLEUS_PRIORITY = 1.2
#: Candidate centres are drawn in batches; this many batches per cell before
#: the layout is declared too dense.
PLACEMENT_BATCH = 16
PLACEMENT_ROUNDS = 20


@dataclass(frozen=True)
class CellShape:
    """Morphology knobs a phenotype can turn (1.0 = DMSO)."""

    nucleus_scale: float
    cell_density: float
    cell_scale: float
    shape_irregularity: float


@dataclass(frozen=True)
class CellLayout:
    """Random parameters of every cell of one field; arrays have one row per cell."""

    size: int
    centre: np.ndarray  # (n, 2) y, x in px
    radius: np.ndarray  # (n,) mean cell radius, px
    harmonics: np.ndarray  # (n, 4) complex amplitudes of boundary harmonics k = 2..5
    nucleus_offset: np.ndarray  # (n, 2) dy, dx of the nucleus centre from the cell centre
    nucleus_axes: np.ndarray  # (n, 2) semi-axes a >= b, px
    nucleus_angle: np.ndarray  # (n,) radians
    nucleoli: np.ndarray  # (n, MAX_NUCLEOLI, 3) dy, dx from the cell centre, sigma px
    nucleoli_count: np.ndarray  # (n,)
    golgi: np.ndarray  # (n, GOLGI_BLOBS, 3) dy, dx from the cell centre, sigma px
    fibres: np.ndarray  # (n, 4) angle, spacing px, phase, curvature 1/px

    @property
    def count(self) -> int:
        """Number of cells in the field."""
        return len(self.radius)


def place_centres(rng: np.random.Generator, reach: np.ndarray, size: int) -> np.ndarray:
    """Random sequential addition: uniform centres, cells ``reach_i + reach_j`` apart.

    Keeps nuclei apart (cells in a monolayer do not stack) while leaving the
    clusters and gaps that uniform seeding gives real wells.
    """
    centres = np.empty((len(reach), 2))
    for i, own_reach in enumerate(reach):
        for _ in range(PLACEMENT_ROUNDS):
            candidates = rng.uniform(0, size, size=(PLACEMENT_BATCH, 2))
            dy = candidates[:, :1] - centres[None, :i, 0]
            dx = candidates[:, 1:] - centres[None, :i, 1]
            fits = np.flatnonzero(np.all(dy * dy + dx * dx >= (reach[:i] + own_reach) ** 2, axis=1))
            if len(fits):
                centres[i] = candidates[fits[0]]
                break
        else:
            raise ValueError(
                f"cannot place cell {i + 1} of {len(reach)} without overlapping nuclei in a "
                f"{size}x{size} field; lower cell_density or nucleus_scale"
            )
    return centres


def draw_layout(rng: np.random.Generator, shape: CellShape, size: int) -> CellLayout:
    """Draw the number, positions and shapes of the cells of one field."""
    expected = CELLS_PER_1080_FIELD * shape.cell_density * (size / 1080.0) ** 2
    count = int(rng.poisson(expected))
    nucleus_radius = NUCLEUS_RADIUS_PX * shape.nucleus_scale * rng.lognormal(0.0, 0.12, count)
    aspect = rng.uniform(1.1, 1.5, count)
    axes = np.stack([nucleus_radius * np.sqrt(aspect), nucleus_radius / np.sqrt(aspect)], axis=1)
    centre = place_centres(rng, NUCLEUS_PRIORITY * axes[:, 0] + NUCLEUS_OFFSET_MAX_PX + 1.0, size)
    radius = CELL_RADIUS_PX * shape.cell_scale * rng.lognormal(0.0, 0.15, count)
    radius = np.maximum(radius, 1.6 * axes[:, 0])
    amplitude = shape.shape_irregularity * BOUNDARY_HARMONICS * rng.uniform(0.3, 1.0, (count, 4))
    harmonics = amplitude * np.exp(1j * rng.uniform(0, 2 * np.pi, (count, 4)))
    offset_angle = rng.uniform(0, 2 * np.pi, count)
    offset_length = rng.uniform(0, NUCLEUS_OFFSET_MAX_PX, count)
    nucleus_offset = np.stack([np.sin(offset_angle), np.cos(offset_angle)], axis=1) * offset_length[:, None]
    nucleus_angle = rng.uniform(0, np.pi, count)
    f32 = np.float32
    return CellLayout(
        size=size,
        centre=centre.astype(f32),
        radius=radius.astype(f32),
        harmonics=harmonics.astype(np.complex64),
        nucleus_offset=nucleus_offset.astype(f32),
        nucleus_axes=axes.astype(f32),
        nucleus_angle=nucleus_angle.astype(f32),
        nucleoli=_draw_nucleoli(rng, axes, nucleus_angle, nucleus_offset, shape.nucleus_scale).astype(f32),
        nucleoli_count=rng.integers(1, MAX_NUCLEOLI + 1, count),
        golgi=_draw_golgi(rng, axes, nucleus_offset).astype(f32),
        fibres=np.stack(
            [
                rng.uniform(0, np.pi, count),
                rng.uniform(6.0, 9.0, count),
                rng.uniform(0, 2 * np.pi, count),
                rng.uniform(-0.006, 0.006, count),
            ],
            axis=1,
        ).astype(f32),
    )


def _draw_nucleoli(
    rng: np.random.Generator, axes: np.ndarray, angle: np.ndarray, offset: np.ndarray, nucleus_scale: float
) -> np.ndarray:
    """Nucleoli inside the inner half of each nucleus, in cell-centred image coordinates."""
    count = len(axes)
    theta = rng.uniform(0, 2 * np.pi, (count, MAX_NUCLEOLI))
    reach = 0.55 * np.sqrt(rng.uniform(0, 1, (count, MAX_NUCLEOLI)))
    u, v = reach * np.cos(theta) * axes[:, :1], reach * np.sin(theta) * axes[:, 1:]
    cos, sin = np.cos(angle)[:, None], np.sin(angle)[:, None]
    dy = offset[:, :1] + u * sin + v * cos
    dx = offset[:, 1:] + u * cos - v * sin
    sigma = 2.2 * nucleus_scale * rng.uniform(0.8, 1.3, (count, MAX_NUCLEOLI))
    return np.stack([dy, dx, sigma], axis=2)


def _draw_golgi(rng: np.random.Generator, axes: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """A Golgi cluster hugging one side of the nucleus, as a few blobs."""
    count = len(axes)
    side = rng.uniform(0, 2 * np.pi, count)[:, None] + rng.normal(0, 0.35, (count, GOLGI_BLOBS))
    distance = axes.mean(axis=1)[:, None] + rng.uniform(2.0, 8.0, (count, GOLGI_BLOBS))
    sigma = rng.uniform(2.5, 4.5, (count, GOLGI_BLOBS))
    return np.stack([offset[:, :1] + distance * np.sin(side), offset[:, 1:] + distance * np.cos(side), sigma], axis=2)


# Unit-amplitude structure maps painted per cell; channels mix them.
STRUCTURES = ("nucleus", "nucleoli", "rim", "thickness", "perinuclear", "membrane", "fibres", "golgi")


@dataclass(frozen=True)
class _Patch:
    """Where one cell is painted and its local coordinates (float32)."""

    rows: slice
    cols: slice
    dy: np.ndarray  # (h, 1) offsets from the cell centre, px
    dx: np.ndarray  # (1, w)
    rho: np.ndarray  # radius over the local cell boundary radius (1 at the edge)
    beyond_nucleus: np.ndarray  # distance outside the nucleus, px (0 inside)
    inner: tuple[slice, slice]  # the nucleus window, relative to the patch
    dn: np.ndarray  # elliptical nucleus radius on the nucleus window (1 at the nuclear edge)


def _window(centre: float, reach: float, size: int) -> slice:
    """Pixel range within ``reach`` of ``centre``, clipped to the field (cells cut by the edge stay cut)."""
    return slice(max(0, int(centre - reach)), min(size, int(centre + reach) + 2))


def _largest_boundary(harmonics: np.ndarray) -> float:
    """Largest boundary radius (in mean radii) of a cell, sampled every 2 degrees.

    Tighter than the sum of harmonic amplitudes, which assumes every lobe
    peaks at the same angle; smaller patches are most of the painting speed.
    """
    theta = np.linspace(0.0, 2 * np.pi, 180, endpoint=False)
    orders = np.arange(2, 2 + len(harmonics))
    return float(1.0 + np.max(np.real(np.exp(1j * np.outer(theta, orders)) @ harmonics)))


def _patch(layout: CellLayout, i: int) -> _Patch:
    """Local coordinates of cell ``i`` in the smallest window that holds it.

    The exact nucleus ellipse is only evaluated in a window around the
    nucleus, a fifth of the cell's patch, because that is where it matters.
    """
    cy, cx = layout.centre[i]
    reach = layout.radius[i] * _largest_boundary(layout.harmonics[i]) + 3.0
    rows, cols = _window(cy, reach, layout.size), _window(cx, reach, layout.size)
    dy = (np.arange(rows.start, rows.stop, dtype=np.float32) - cy)[:, None]
    dx = (np.arange(cols.start, cols.stop, dtype=np.float32) - cx)[None, :]
    r = np.maximum(np.hypot(dy, dx), np.float32(1e-3))
    cos1, sin1 = dx / r, dy / r
    cos_k, sin_k = cos1, sin1
    boundary = np.ones_like(r)
    for harmonic in layout.harmonics[i]:
        # angle-addition recurrence: cos/sin of k·theta for k = 2..5 without trig calls
        cos_k, sin_k = cos_k * cos1 - sin_k * sin1, sin_k * cos1 + cos_k * sin1
        boundary += harmonic.real * cos_k - harmonic.imag * sin_k
    oy, ox = layout.nucleus_offset[i]
    a, b = layout.nucleus_axes[i]
    beyond = np.maximum(np.hypot(dy - oy, dx - ox) - np.sqrt(a * b), np.float32(0))
    ny, nx = _window(cy + oy, 1.6 * a + 2, layout.size), _window(cx + ox, 1.6 * a + 2, layout.size)
    inner = (
        slice(max(ny.start, rows.start) - rows.start, min(ny.stop, rows.stop) - rows.start),
        slice(max(nx.start, cols.start) - cols.start, min(nx.stop, cols.stop) - cols.start),
    )
    ey, ex = dy[inner[0]] - oy, dx[:, inner[1]] - ox
    cos, sin = np.cos(layout.nucleus_angle[i]), np.sin(layout.nucleus_angle[i])
    dn = np.hypot((ex * cos + ey * sin) / a, (ey * cos - ex * sin) / b)
    return _Patch(rows, cols, dy, dx, r / (layout.radius[i] * boundary), beyond, inner, dn)


def paint_cells(layout: CellLayout) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Paint every cell: a label image (0 = background) and unit structure maps."""
    size = layout.size
    label = np.zeros((size, size), np.int32)
    best = np.full((size, size), np.inf, np.float32)
    patches = [_patch(layout, i) for i in range(layout.count)]
    for i, p in enumerate(patches):
        key = p.rho.copy()
        key[p.inner] = np.where(p.dn < NUCLEUS_PRIORITY, p.dn - 2.0, key[p.inner])
        wins = (key < 1.0) & (key < best[p.rows, p.cols])
        best[p.rows, p.cols][wins] = key[wins]
        label[p.rows, p.cols][wins] = i + 1
    maps = {name: np.zeros((size, size), np.float32) for name in STRUCTURES}
    for i, p in enumerate(patches):
        own = label[p.rows, p.cols] == i + 1
        for name, value in _cell_structures(layout, i, p).items():
            np.copyto(maps[name][p.rows, p.cols], value, where=own)
        for name, value in _nucleus_structures(layout, i, p).items():
            np.copyto(maps[name][p.rows, p.cols][p.inner], value, where=own[p.inner])
    return label, maps


def _cell_structures(layout: CellLayout, i: int, p: _Patch) -> dict[str, np.ndarray]:
    """Cytoplasmic structures of one cell on its patch (unit amplitude)."""
    radius = layout.radius[i]
    cell = expit((1.0 - p.rho) * (radius / EDGE_PX))
    angle, spacing, phase, curvature = layout.fibres[i]
    cos, sin = np.cos(angle), np.sin(angle)
    along = p.dx * cos + p.dy * sin
    across = p.dx * sin - p.dy * cos + curvature * along**2  # gently bent bundles
    bundles = np.maximum(np.cos(across * (2 * np.pi / spacing) + phase), np.float32(0))
    bundles *= bundles  # cos**6 by products: narrow bundles, and far cheaper than a power
    thickness = cell * (0.2 + 0.8 * np.exp(p.beyond_nucleus * (-1.0 / (0.3 * radius))))
    return {
        "thickness": thickness,
        "perinuclear": thickness * thickness * thickness,
        "membrane": cell * np.exp(-(((1.0 - p.rho) * (radius / 2.5)) ** 2)),
        "fibres": cell * bundles * bundles * bundles,
        "golgi": _blobs(p.dy, p.dx, layout.golgi[i]),
    }


def _nucleus_structures(layout: CellLayout, i: int, p: _Patch) -> dict[str, np.ndarray]:
    """Nuclear structures of one cell on its nucleus window (unit amplitude)."""
    b = layout.nucleus_axes[i, 1]
    dome = np.sqrt(np.clip(1.0 - p.dn**2, 0.0, None))
    return {
        "nucleus": expit((1.0 - p.dn) * (b / EDGE_PX)) * (0.6 + 0.4 * dome),
        "rim": np.exp(-(((p.dn - 1.0) * (b / 2.0)) ** 2)),
        "nucleoli": _blobs(p.dy[p.inner[0]], p.dx[:, p.inner[1]], layout.nucleoli[i, : layout.nucleoli_count[i]]),
    }


def _blobs(dy: np.ndarray, dx: np.ndarray, blobs: np.ndarray) -> np.ndarray:
    """Union (maximum) of isotropic Gaussian blobs of peak 1 at (dy, dx) offsets.

    An isotropic Gaussian is the outer product of two 1-D ones, so each blob
    costs two short vectors and one product instead of a patch-sized exp.
    """
    out = np.zeros(np.broadcast_shapes(dy.shape, dx.shape), np.float32)
    for by, bx, sigma in blobs:
        scale = -0.5 / sigma**2
        out = np.maximum(out, np.exp(scale * (dy - by) ** 2) * np.exp(scale * (dx - bx) ** 2))
    return out
