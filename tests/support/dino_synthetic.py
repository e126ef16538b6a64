"""Synthetic OME-Zarr plates for the embedding benchmark and tests.

Fields have nucleus-like blobs in the DNA channel, wider cell bodies in the
other channels, a background and noise, so the recipe's foreground test
and crop selection see realistic structure; a few distinct fields are
generated and the rest derived by flips and shifts, which keeps making a
384-field plate cheap.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import zarr
from ome_zarr.format import FormatV04, FormatV05
from ome_zarr.writer import write_image, write_plate_metadata, write_well_metadata
from scipy.ndimage import gaussian_filter

from workflow_scripts.wells import ROWS, split_well, well_sort_key

FORMATS = {"0.4": FormatV04, "0.5": FormatV05}
NUCLEUS_SIGMA = 6.0
CELL_SIGMA = 18.0
BRIGHT_NUCLEUS = 30000


def synthetic_field(rng: np.random.Generator, size: int = 1080, channels: int = 5, n_cells: int = 80) -> np.ndarray:
    """One (channels, size, size) uint16 field; channel 0 is nucleus-like, the rest cell-body-like."""
    seeds = np.zeros((size, size), np.float32)
    ys, xs = rng.integers(0, size, n_cells), rng.integers(0, size, n_cells)
    seeds[ys, xs] = rng.uniform(0.5, 1.5, n_cells)
    nuclei = gaussian_filter(seeds, NUCLEUS_SIGMA)
    bodies = gaussian_filter(seeds, CELL_SIGMA)
    layers = [nuclei / nuclei.max()]
    for channel in range(1, channels):
        weight = rng.uniform(0.3, 1.0)
        layers.append(weight * bodies / bodies.max() + (1 - weight) * layers[0] * (channel % 2))
    stack = np.stack(layers)
    noisy = 600 + 20000 * stack + rng.normal(0, 150, stack.shape).astype(np.float32)
    return np.clip(noisy, 0, 65535).astype(np.uint16)


def sparse_nuclei_field(
    rng: np.random.Generator,
    dense_crops: Sequence[int],
    dna_index: int,
    size: int = 1080,
    crop_size: int = 224,
    channels: int = 5,
) -> np.ndarray:
    """A field with a known answer to the recipe's foreground rule.

    The DNA channel is a near-constant dark background with bright pixels
    covering 0.5 % of every crop (under the 1 % rule) and 5 % of the crops
    listed in ``dense_crops`` (row-major indices); other channels are noise.
    """
    field = rng.normal(2000, 100, size=(channels, size, size)).clip(0, 65535).astype(np.uint16)
    dna = rng.integers(1000, 1003, size=(size, size)).astype(np.uint16)
    dna[rng.random((size, size)) < 0.005] = BRIGHT_NUCLEUS
    cols = size // crop_size
    for index in dense_crops:
        r, c = divmod(index, cols)
        block = dna[r * crop_size : (r + 1) * crop_size, c * crop_size : (c + 1) * crop_size]
        block[rng.random(block.shape) < 0.05] = BRIGHT_NUCLEUS
    field[dna_index] = dna
    return field


def derived_fields(base: Sequence[np.ndarray], count: int, rng: np.random.Generator) -> Iterable[np.ndarray]:
    """``count`` fields made from ``base`` by flips and circular shifts."""
    for index in range(count):
        field = base[index % len(base)]
        if index >= len(base):
            field = np.roll(field[:, :: (-1) ** index], int(rng.integers(0, field.shape[-1])), axis=-1)
        yield field


def write_plate(
    path: str | Path,
    wells: Mapping[str, Sequence[np.ndarray]],
    labels: Sequence[str],
    *,
    ngff_version: str = "0.5",
    levels: int = 2,
    workers: int = 1,
) -> Path:
    """Write fields (c, y, x) per well (``A01`` form) as an NGFF HCS plate.

    Each field is one chunk per channel, with ``levels`` pyramid levels
    and ``omero`` channel labels, as the convert stage lays plates out.
    Groups are created first, so ``workers`` threads can then write the
    images, each into its own group.
    """
    fmt = FORMATS[ngff_version]()
    root = zarr.open_group(str(path), mode="w", zarr_format=3 if ngff_version == "0.5" else 2)
    paths = [split_well(well) for well in sorted(wells, key=well_sort_key)]
    rows = sorted({r for r, _ in paths}, key=ROWS.index)
    columns = sorted({c for _, c in paths}, key=int)
    write_plate_metadata(root, rows, columns, [f"{r}/{c}" for r, c in paths], fmt=fmt)
    window = {"min": 0, "max": 65535, "start": 0, "end": 65535}
    omero = {"channels": [{"label": label, "color": "FFFFFF", "window": window} for label in labels]}
    jobs = []
    for well, fields in wells.items():
        row, column = split_well(well)
        well_group = root.require_group(row).require_group(column)
        write_well_metadata(well_group, [{"path": str(i)} for i in range(len(fields))], fmt=fmt)
        jobs += [(pixels, well_group.require_group(str(index))) for index, pixels in enumerate(fields)]

    def write(job: tuple[np.ndarray, zarr.Group]) -> None:
        pixels, group = job
        write_image(
            pixels,
            group,
            scale_factors=[2**level for level in range(1, levels)],
            axes="cyx",
            fmt=fmt,
            storage_options={"chunks": (1, *pixels.shape[1:])},
            omero=omero,
        )

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(write, jobs))
    return Path(path)
