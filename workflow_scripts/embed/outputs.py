"""The stage's parquet tables: metadata stamped on and provenance attached."""

from __future__ import annotations

import json
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from workflow_scripts.atomic import write_parquet_atomic

PROVENANCE_KEY = "dino"
VERSIONED_PACKAGES = ("workflow_scripts", "torch", "numpy", "zarr", "pandas", "pyarrow")


def package_versions() -> dict[str, str]:
    """Versions of the packages that shape the numbers, for the provenance record."""
    versions = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def stamp_plate(table: pd.DataFrame, source: str, batch: str, plate: str, model_label: str) -> pd.DataFrame:
    """Prefix the plate keys and append ``Metadata_Model``, all as text."""
    keys = pd.DataFrame(
        {"Metadata_Source": source, "Metadata_Batch": batch, "Metadata_Plate": plate},
        index=table.index,
        dtype="string",
    )
    stamped = pd.concat([keys, table], axis=1)
    stamped.insert(
        stamped.columns.get_loc("Metadata_Well") + 1, "Metadata_Model", pd.array([model_label] * len(table), "string")
    )
    return stamped


def add_sites(fields: pd.DataFrame, sites: pd.DataFrame, where: str) -> pd.DataFrame:
    """Add ``Metadata_Site`` from a (Metadata_Well, Metadata_Field, Metadata_Site) table.

    Every embedded field must be found: a gap means the site table belongs
    to another version of the plate.
    """
    merged = fields.merge(sites, on=["Metadata_Well", "Metadata_Field"], how="left", validate="one_to_one")
    absent = merged["Metadata_Site"].isna()
    if absent.any():
        first = merged.loc[absent, ["Metadata_Well", "Metadata_Field"]].iloc[0]
        raise ValueError(
            f"{where}: no Metadata_Site for {int(absent.sum())} field(s), first well "
            f"{first['Metadata_Well']} field {first['Metadata_Field']}"
        )
    site = merged.pop("Metadata_Site").astype("string")
    merged.insert(merged.columns.get_loc("Metadata_Well") + 1, "Metadata_Site", site)
    return merged


def write_table(table: pd.DataFrame, path: str | Path, provenance: dict) -> None:
    """Write ``table`` atomically with ``provenance`` as JSON under the ``dino`` metadata key."""
    write_parquet_atomic(table, path, {PROVENANCE_KEY: json.dumps(provenance, sort_keys=True)})


def read_provenance(path: str | Path) -> dict:
    """The provenance record of a table written by this stage."""
    metadata = pq.read_schema(path).metadata or {}
    if PROVENANCE_KEY.encode() not in metadata:
        raise ValueError(f"{path}: no '{PROVENANCE_KEY}' provenance in the parquet metadata")
    return json.loads(metadata[PROVENANCE_KEY.encode()])
