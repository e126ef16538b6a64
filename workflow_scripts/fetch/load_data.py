"""LoadData: the per-plate table that names every image and illumination file.

Gallery plates carry it in one of two schemas: the current one with
``URL_{Image}`` columns, and the older one with ``FileName_{Image}`` and
``PathName_{Image}`` columns. Both normalise to the same table, one row per
site, one ``URL_Orig{Ch}`` (and ``URL_Illum{Ch}``) column per channel, with
every ``Metadata_*`` column as text.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from workflow_scripts.errors import InputError
from workflow_scripts.plates import read_metadata_csv
from workflow_scripts.wells import normalize_well

REQUIRED_METADATA = ["Metadata_Plate", "Metadata_Well", "Metadata_Site"]


class LoadDataError(InputError):
    """LoadData that cannot be used; the message names the file and column."""


def read_load_data_file(path: str | Path) -> pd.DataFrame:
    """Read CSV, gzipped CSV or parquet LoadData with ``Metadata_*`` as text."""
    path = Path(path)
    if path.suffix == ".parquet":
        table = pd.read_parquet(path)
        metadata = [c for c in table.columns if c.startswith("Metadata_")]
        table[metadata] = table[metadata].astype("string")
        return table
    return read_metadata_csv(path)


def _url_column(table: pd.DataFrame, image: str, name: str, required: bool) -> pd.Series | None:
    """The URLs of one image (``OrigDNA``, ``IllumDNA``) from either schema."""
    if f"URL_{image}" in table.columns:
        urls = table[f"URL_{image}"].astype("string")
    elif f"FileName_{image}" in table.columns and f"PathName_{image}" in table.columns:
        paths = table[f"PathName_{image}"].astype("string").str.rstrip("/")
        urls = paths + "/" + table[f"FileName_{image}"].astype("string")
    elif required:
        raise LoadDataError(f"{name}: no column URL_{image} (nor FileName_{image} with PathName_{image})")
    else:
        return None
    bad = ~urls.fillna("").str.startswith("s3://")
    if bad.any():
        row = int(bad.to_numpy().nonzero()[0][0])
        raise LoadDataError(f"{name}: column for {image}, row {row + 2}: {urls.iloc[row]!r} is not an s3:// URL")
    return urls


def normalize_load_data(
    table: pd.DataFrame, name: str, channels: Sequence[str], plate: str | None = None
) -> pd.DataFrame:
    """One row per site: text metadata, ``URL_Orig{Ch}`` and ``URL_Illum{Ch}`` columns.

    ``name`` (the file or key) appears in every error so a bad plate is found
    quickly among thousands.
    """
    missing = [c for c in REQUIRED_METADATA if c not in table.columns]
    if missing:
        raise LoadDataError(f"{name}: missing column(s) {missing}")
    metadata = table[[c for c in table.columns if c.startswith("Metadata_")]].astype("string")
    metadata = metadata.apply(lambda column: column.str.strip())
    metadata["Metadata_Well"] = _normalized_wells(metadata["Metadata_Well"], name)
    if plate is not None:
        other = sorted(set(metadata["Metadata_Plate"]) - {plate})
        if other:
            raise LoadDataError(f"{name}: Metadata_Plate {other} where plate {plate!r} was expected")
    urls = {}
    for channel in channels:
        urls[f"URL_Orig{channel}"] = _url_column(table, f"Orig{channel}", name, required=True)
    illum = {f"URL_Illum{ch}": _url_column(table, f"Illum{ch}", name, required=False) for ch in channels}
    if all(series is not None for series in illum.values()):
        urls.update(illum)
    result = pd.concat([metadata, pd.DataFrame(urls, index=table.index)], axis=1)
    duplicated = result.duplicated(["Metadata_Plate", "Metadata_Well", "Metadata_Site"])
    if duplicated.any():
        first = result.loc[duplicated].iloc[0]
        raise LoadDataError(
            f"{name}: site {first['Metadata_Site']} of well {first['Metadata_Well']} is listed more than once"
        )
    return result.reset_index(drop=True)


def _normalized_wells(wells: pd.Series, name: str) -> pd.Series:
    normalized = wells.map(normalize_well)
    bad = normalized.isna()
    if bad.any():
        row = int(bad.to_numpy().nonzero()[0][0])
        raise LoadDataError(f"{name}: column Metadata_Well, row {row + 2}: {wells.iloc[row]!r} is not a well name")
    return normalized.astype("string")


def restrict_sample(
    sites: pd.DataFrame, wells: Sequence[str], site_ids: Sequence[str | int], plate: str
) -> pd.DataFrame:
    """Keep the pilot's wells and sites (empty lists keep everything)."""
    keep = pd.Series(True, index=sites.index)
    if wells:
        keep &= sites["Metadata_Well"].isin([normalize_well(w) for w in wells])
    if site_ids:
        keep &= sites["Metadata_Site"].isin([str(s) for s in site_ids])
    if not keep.any():
        raise LoadDataError(f"plate {plate}: sample.wells={list(wells)} sample.sites={list(site_ids)} match no site")
    return sites[keep].reset_index(drop=True)


def image_urls(sites: pd.DataFrame) -> list[str]:
    """Every object the sites name: images first, then each illumination file once."""
    orig = [c for c in sites.columns if c.startswith("URL_Orig")]
    illum = [c for c in sites.columns if c.startswith("URL_Illum")]
    urls = sites[orig].to_numpy().ravel().tolist()
    urls += list(dict.fromkeys(sites[illum].to_numpy().ravel().tolist()))
    return urls
