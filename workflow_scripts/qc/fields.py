"""The QC stage's per-field table, as the stages after it read it.

It names each field's acquisition site and whether QC excludes it
(``qc_excluded``: flagged, and ``qc.exclude_flagged`` on), the one source of
truth for which fields the embeddings and the CellProfiler profiles leave out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from workflow_scripts.errors import InputError

REQUIRED_COLUMNS = ("Metadata_Plate", "Metadata_Well", "Metadata_Site", "Metadata_Field", "qc_excluded")


@dataclass(frozen=True)
class QcFields:
    """Sites per (well, field) and the fields QC excludes."""

    sites: pd.DataFrame  # Metadata_Well, Metadata_Field, Metadata_Site
    excluded: frozenset[tuple[str, int]]  # (well, field)

    @property
    def excluded_sites(self) -> frozenset[tuple[str, str]]:
        """The excluded fields as (well, site), the keys CellProfiler's Image table uses."""
        return frozenset(
            (str(well), str(s))
            for well, field, s in self.sites.itertuples(index=False)
            if (str(well), int(field)) in self.excluded
        )


def read_qc_fields(path: str | Path, plate: str) -> QcFields:
    """Read and check ``qc/fields.parquet`` of ``plate``; any inconsistency is an error naming the file."""
    table = pd.read_parquet(path)
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {missing}")
    plates = set(table["Metadata_Plate"].astype(str))
    if plates - {plate}:
        raise InputError(f"{path}: Metadata_Plate {sorted(plates)} does not match plate {plate!r}")
    if table["qc_excluded"].isna().any() or table["qc_excluded"].dtype != bool:
        raise InputError(f"{path}: column qc_excluded must be boolean without missing values")
    if table["Metadata_Field"].isna().any():
        raise InputError(f"{path}: column Metadata_Field has missing values")
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
        raise InputError(f"{path}: well {row['Metadata_Well']} field {row['Metadata_Field']} appears twice")
    excluded = sites.loc[table["qc_excluded"].to_numpy(), ["Metadata_Well", "Metadata_Field"]]
    return QcFields(sites, frozenset((str(w), int(f)) for w, f in excluded.itertuples(index=False)))
