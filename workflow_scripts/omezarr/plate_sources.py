"""What a plate is made of: the fetch stage's ``load_data.parquet`` read as fields.

The conversion needs, per field, the local TIFF of every channel in config
order, and per plate the pixel size and illumination files. Everything is
checked here, before any pixel is read, so a malformed table fails with the
plate and column named instead of half-way through a conversion.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from workflow_scripts.errors import InputError
from workflow_scripts.fetch.s3 import parse_s3_url
from workflow_scripts.paths import cache_path
from workflow_scripts.wells import join_well, split_well, well_sort_key

PLATE_COLUMNS = ("Metadata_Source", "Metadata_Batch", "Metadata_Plate")
FIELD_COLUMNS = ("Metadata_Well", "Metadata_Site")
PIXEL_SIZE_COLUMN = "Metadata_ImageResolutionX"
METRES_PER_MICROMETRE = 1e-6


@dataclass(frozen=True)
class FieldSource:
    """One site of one well: where its channel TIFFs are, in channel order."""

    well: str
    site: str
    index: int
    urls: tuple[str, ...]
    paths: tuple[Path, ...]


@dataclass(frozen=True)
class PlateSources:
    """Everything the conversion reads, resolved to local paths."""

    source: str
    batch: str
    plate: str
    channels: tuple[str, ...]
    wells: dict[str, tuple[FieldSource, ...]]
    pixel_size_um: float | None
    illum_urls: dict[str, str] | None
    illum_paths: dict[str, Path] | None

    def fields(self) -> Iterator[FieldSource]:
        """Every field in plate order (wells row-major, sites in order)."""
        for fields in self.wells.values():
            yield from fields


def read_plate_sources(load_data: str | Path, cache_dir: str | Path, channels: Sequence[str]) -> PlateSources:
    """Read and check one plate's ``load_data.parquet``; resolve URLs to the cache."""
    table = pd.read_parquet(load_data)
    _check_columns(table, load_data, channels)
    if table.empty:
        raise InputError(f"{load_data}: load_data has no rows")
    source, batch, plate = (_single_value(table, column, load_data) for column in PLATE_COLUMNS)
    wells = _wells(table, plate, cache_dir, channels)
    illum_urls = _illum_urls(table, plate, channels)
    return PlateSources(
        source=source,
        batch=batch,
        plate=plate,
        channels=tuple(channels),
        wells=wells,
        pixel_size_um=_pixel_size_um(table, plate),
        illum_urls=illum_urls,
        illum_paths=_illum_paths(illum_urls, cache_dir),
    )


def local_path(cache_dir: str | Path, url: str) -> Path:
    """Where the fetch stage left the object behind ``url``."""
    location = parse_s3_url(url)
    return cache_path(cache_dir, location.bucket, location.key)


def _check_columns(table: pd.DataFrame, load_data: str | Path, channels: Sequence[str]) -> None:
    if not channels:
        raise InputError("no channels configured")
    required = [*PLATE_COLUMNS, *FIELD_COLUMNS, *(f"URL_Orig{ch}" for ch in channels)]
    missing = [column for column in required if column not in table.columns]
    if missing:
        raise InputError(f"{load_data}: missing columns {missing}")
    for column in required:
        if table[column].isna().any():
            rows = table.index[table[column].isna()].tolist()[:5]
            raise InputError(f"{load_data}: empty values in column {column} (rows {rows})")


def _single_value(table: pd.DataFrame, column: str, load_data: str | Path) -> str:
    values = sorted(table[column].astype(str).unique())
    if len(values) != 1:
        raise InputError(f"{load_data}: expected one plate, column {column} has {values[:5]}")
    return values[0]


def _site_order(sites: pd.Series) -> pd.Series:
    """Numeric order when every site is a number (site 10 after site 9), else text order."""
    if sites.str.fullmatch(r"\d+").all():
        return sites.astype(int)
    return sites


def _wells(
    table: pd.DataFrame, plate: str, cache_dir: str | Path, channels: Sequence[str]
) -> dict[str, tuple[FieldSource, ...]]:
    table = table.assign(
        Metadata_Well=table["Metadata_Well"].astype(str).map(lambda w: _checked_well(w, plate)),
        Metadata_Site=table["Metadata_Site"].astype(str),
    )
    duplicated = table.duplicated(["Metadata_Well", "Metadata_Site"], keep=False)
    if duplicated.any():
        pairs = table.loc[duplicated, ["Metadata_Well", "Metadata_Site"]].drop_duplicates()
        raise InputError(f"plate {plate}: well/site listed twice: {pairs.values.tolist()[:5]}")
    table = table.assign(_order=_site_order(table["Metadata_Site"]))
    url_columns = [f"URL_Orig{ch}" for ch in channels]
    wells: dict[str, tuple[FieldSource, ...]] = {}
    for well in sorted(table["Metadata_Well"].unique(), key=well_sort_key):
        rows = table[table["Metadata_Well"] == well].sort_values("_order")
        wells[well] = tuple(
            FieldSource(
                well=well,
                site=row.Metadata_Site,
                index=index,
                urls=tuple(str(url) for url in urls),
                paths=tuple(local_path(cache_dir, str(url)) for url in urls),
            )
            for index, (row, urls) in enumerate(zip(rows.itertuples(), rows[url_columns].itertuples(index=False)))
        )
    return wells


def _checked_well(well: str, plate: str) -> str:
    """Normalise to ``A01``; a malformed well names the plate."""
    try:
        return join_well(*split_well(well))
    except ValueError as error:
        raise InputError(f"plate {plate}: {error}") from None


def _pixel_size_um(table: pd.DataFrame, plate: str) -> float | None:
    """Pixel size in micrometres from the acquisition metadata (metres in LoadData)."""
    if PIXEL_SIZE_COLUMN not in table.columns:
        return None
    try:
        values = {float(v) for v in table[PIXEL_SIZE_COLUMN].dropna().astype(str)}
    except ValueError as error:
        raise InputError(f"plate {plate}: {PIXEL_SIZE_COLUMN} is not a number ({error})") from None
    if not values:
        return None
    if len(values) != 1 or min(values) <= 0:
        raise InputError(f"plate {plate}: {PIXEL_SIZE_COLUMN} must be one positive value, got {sorted(values)}")
    return round(values.pop() / METRES_PER_MICROMETRE, 9)


def _illum_urls(table: pd.DataFrame, plate: str, channels: Sequence[str]) -> dict[str, str] | None:
    """One illumination file per channel for the whole plate, or none at all."""
    columns = {ch: f"URL_Illum{ch}" for ch in channels}
    present = [column for column in columns.values() if column in table.columns]
    if not present:
        return None
    if len(present) != len(columns):
        missing = sorted(set(columns.values()) - set(present))
        raise InputError(f"plate {plate}: illumination columns incomplete, missing {missing}")
    urls = {}
    for ch, column in columns.items():
        values = table[column].dropna().astype(str).unique()
        if len(values) != 1 or table[column].isna().any():
            raise InputError(f"plate {plate}: {column} must hold one URL for every row, got {list(values)[:3]}")
        urls[ch] = values[0]
    return urls


def _illum_paths(urls: dict[str, str] | None, cache_dir: str | Path) -> dict[str, Path] | None:
    return None if urls is None else {ch: local_path(cache_dir, url) for ch, url in urls.items()}
