"""The QC stage's per-field table, as the embedding stage uses it.

It names each field's acquisition site and whether QC passed it, so the
stage can label fields with their site and skip the flagged ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

REQUIRED_COLUMNS = ("Metadata_Plate", "Metadata_Well", "Metadata_Site", "Metadata_Field", "qc_pass")


@dataclass(frozen=True)
class QcFields:
    """Sites per (well, field) and the fields QC flagged."""

    sites: pd.DataFrame  # Metadata_Well, Metadata_Field, Metadata_Site
    flagged: frozenset[tuple[str, int]]


def read_qc_fields(path: str | Path, plate: str) -> QcFields:
    """Read and check ``qc/fields.parquet`` of ``plate``; any inconsistency is an error naming the file."""
    table = pd.read_parquet(path)
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}")
    plates = set(table["Metadata_Plate"].astype(str))
    if plates - {plate}:
        raise ValueError(f"{path}: Metadata_Plate {sorted(plates)} does not match plate {plate!r}")
    if table["qc_pass"].isna().any() or table["qc_pass"].dtype != bool:
        raise ValueError(f"{path}: column qc_pass must be boolean without missing values")
    if table["Metadata_Field"].isna().any():
        raise ValueError(f"{path}: column Metadata_Field has missing values")
    sites = pd.DataFrame(
        {
            "Metadata_Well": table["Metadata_Well"].astype("string"),
            "Metadata_Field": table["Metadata_Field"].astype("int64"),
            "Metadata_Site": table["Metadata_Site"].astype("string"),
        }
    )
    duplicated = sites.duplicated(["Metadata_Well", "Metadata_Field"])
    if duplicated.any():
        row = sites[duplicated].iloc[0]
        raise ValueError(f"{path}: well {row['Metadata_Well']} field {row['Metadata_Field']} appears twice")
    flagged = sites.loc[~table["qc_pass"].to_numpy(), ["Metadata_Well", "Metadata_Field"]]
    return QcFields(sites, frozenset((str(w), int(f)) for w, f in flagged.itertuples(index=False)))
