"""The stage's parquet tables: plate metadata stamped on, field sites added."""

from __future__ import annotations

import pandas as pd

from workflow_scripts.errors import InputError

STAGE = "dino"
VERSIONED_PACKAGES = ("workflow_scripts", "torch", "numpy", "zarr", "pandas", "pyarrow")


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
        raise InputError(
            f"{where}: no Metadata_Site for {int(absent.sum())} field(s), first well "
            f"{first['Metadata_Well']} field {first['Metadata_Field']}"
        )
    site = merged.pop("Metadata_Site").astype("string")
    merged.insert(merged.columns.get_loc("Metadata_Well") + 1, "Metadata_Site", site)
    return merged
