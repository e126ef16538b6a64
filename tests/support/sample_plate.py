"""A plate laid out as the fetch stage leaves it, built from real Cell Painting pixels.

The conversion tests and ``benchmarks/convert.py`` need plates of any size
with realistic pixel statistics and with known content (to compare every
converted pixel with its TIFF, and to plant bad fields). Fields are cut
from real JUMP fields (rotated, mirrored to size) with fresh shot
noise, so no two fields are identical and compression sees real data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile
import zarr

from workflow_scripts.illumination import illum_file_name
from workflow_scripts.omezarr.keys import STATUS_KEY
from workflow_scripts.paths import cache_path
from workflow_scripts.wells import split_well

BUCKET = "cellpainting-gallery"
GAIN = 2.0  # shot-noise gain: counts per photo-electron


def real_fields(pixels_dir: str | Path, channels: Sequence[str]) -> np.ndarray:
    """The real fields of ``jump-pixels`` as (site, c, y, x) in ``channels`` order."""
    pixels_dir = Path(pixels_dir)
    order = pd.read_csv(pixels_dir / "channels.csv").set_index("channel")["idx"]
    images = zarr.open_array(pixels_dir / "images.zarr" / "images", mode="r")[...]
    return images[:, [int(order[ch]) for ch in channels]]


def textured_field(rng: np.random.Generator, real: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A new (c, y, x) uint16 field: a rotated real field, mirrored to size, cropped, with shot noise."""
    tile = np.rot90(real, k=int(rng.integers(4)), axes=(1, 2))
    if rng.integers(2):
        tile = tile[:, :, ::-1]
    # mirrored, not repeated: repeats would put sharp seams into the field
    big = np.pad(tile, ((0, 0), (0, shape[0]), (0, shape[1])), mode="symmetric")
    y = int(rng.integers(big.shape[1] - shape[0] + 1))
    x = int(rng.integers(big.shape[2] - shape[1] + 1))
    crop = big[:, y : y + shape[0], x : x + shape[1]].astype(np.float64)
    noisy = rng.poisson(crop / GAIN) * GAIN
    return np.clip(noisy, 0, np.iinfo(np.uint16).max).astype(np.uint16)


def sample_fields(
    real: np.ndarray, wells: Sequence[str], sites: Sequence[str], shape: tuple[int, int], seed: int = 0
) -> dict[tuple[str, str], np.ndarray]:
    """A distinct textured field for every (well, site), reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    return {(well, site): textured_field(rng, real, shape) for well in wells for site in sites}


@dataclass(frozen=True)
class FetchedPlate:
    """Where a sample plate's files are: its ``load_data.parquet`` and the cache."""

    load_data: Path
    cache_dir: Path
    plate: str
    urls: dict[tuple[str, str, str], str]  # (well, site, channel) -> s3:// URL

    def tiff(self, well: str, site: str, channel: str) -> Path:
        """The cached TIFF of one channel of one field (to damage it in tests)."""
        url = self.urls[(well, site, channel)]
        return cache_path(self.cache_dir, BUCKET, url.removeprefix(f"s3://{BUCKET}/"))


def write_fetched_plate(
    root: str | Path,
    fields: Mapping[tuple[str, str], np.ndarray],
    channels: Sequence[str],
    plate: str = "PLATE1",
    source: str = "source_4",
    batch: str = "BATCH1",
    pixel_size_m: float | None = 5.98e-7,
    illum: np.ndarray | None = None,
) -> FetchedPlate:
    """Write ``fields[(well, site)]`` (c, y, x) as TIFFs in a cache plus the plate's load_data.

    ``illum`` (c, y, x) float adds ``{plate}_Illum{Ch}.npy`` files and
    ``URL_Illum*`` columns, as the gallery has for most plates.
    """
    root = Path(root)
    cache_dir = root / "cache"
    prefix = f"cpg-sample/{source}/images/{batch}"
    rows, urls = [], {}
    for (well, site), pixels in fields.items():
        row = {
            "Metadata_Source": source,
            "Metadata_Batch": batch,
            "Metadata_Plate": plate,
            "Metadata_Well": well,
            "Metadata_Site": site,
        }
        for channel, plane in zip(channels, pixels):
            key = f"{prefix}/images/{plate}/{well}_s{site}_{channel}.tiff"
            _write(cache_path(cache_dir, BUCKET, key), lambda path, p=plane: tifffile.imwrite(path, p))
            urls[(well, site, channel)] = row[f"URL_Orig{channel}"] = f"s3://{BUCKET}/{key}"
        if pixel_size_m is not None:
            row["Metadata_ImageResolutionX"] = row["Metadata_ImageResolutionY"] = str(pixel_size_m)
        rows.append(row)
    table = pd.DataFrame(rows)
    if illum is not None:
        for channel, plane in zip(channels, illum):
            key = f"{prefix}/illum/{plate}/{illum_file_name(plate, channel)}"
            _write(cache_path(cache_dir, BUCKET, key), lambda path, p=plane: np.save(path, p))
            table[f"URL_Illum{channel}"] = f"s3://{BUCKET}/{key}"
    load_data = root / "load_data.parquet"
    table.astype(str).to_parquet(load_data, index=False)
    return FetchedPlate(load_data, cache_dir, plate, urls)


def _write(path: Path, writer) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    writer(path)


def truncate(path: Path) -> None:
    """Cut a TIFF in half: its header still reads, its pixels do not (as an interrupted download)."""
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def conversion_status(plate: str | Path, well: str, field: int) -> dict:
    """The status the converter recorded for one field, as stored (the reader exposes only part of it)."""
    row, column = split_well(well)
    statuses = zarr.open_group(Path(plate) / row / column, mode="r").attrs[STATUS_KEY]["fields"]
    return next(status for status in statuses if status["field"] == field)
