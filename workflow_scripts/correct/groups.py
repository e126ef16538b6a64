"""Which rows are corrected together, and in which blocks transforms run.

Plates of different ``Metadata_PlateType`` (ORF, CRISPR, compound) are
corrected apart when ``correction.by_plate_type`` is set; within a group the
batch key names the batches. Fitted transforms are applied one plate at a
time, with the plate's rows in well order: a plate then reaches BLAS as the
same matrix whatever else the table holds, so a locked run reproduces an
earlier run's rows bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa

from workflow_scripts.errors import InputError

PLATE, WELL, PERT_TYPE, PLATE_TYPE = "Metadata_Plate", "Metadata_Well", "Metadata_PertType", "Metadata_PlateType"
NEGCON = "negcon"


class Plate(NamedTuple):
    """One plate of a group: its name, its batch, its rows in well order and those wells."""

    name: str
    batch: str
    rows: np.ndarray
    wells: np.ndarray


@dataclass(frozen=True)
class Group:
    """The rows of one plate type (or of the whole table), as row indices of the full table."""

    plate_type: str | None
    index: np.ndarray
    batch: np.ndarray
    negcon: np.ndarray
    batches: dict[str, np.ndarray]
    plates: list[Plate]

    def controls(self, rows: np.ndarray) -> np.ndarray:
        """The negative-control rows among ``rows``."""
        return rows[self.negcon[rows]]

    @property
    def label(self) -> str:
        """How messages name the group."""
        return f"plate type {self.plate_type}" if self.plate_type is not None else "all plates"


def plate_groups(metadata: pa.Table, batch_key: str, by_plate_type: bool, path: Path) -> list[Group]:
    """The table's groups, sorted by plate type; an error naming ``path`` for missing metadata."""
    required = [PLATE, WELL, batch_key] + (
        [PLATE_TYPE] if by_plate_type and PLATE_TYPE in metadata.column_names else []
    )
    for column in required:
        _require(metadata, column, path)
    optional = [PERT_TYPE] if PERT_TYPE in metadata.column_names else []
    meta = metadata.select(list(dict.fromkeys(required + optional))).to_pandas()
    batch = meta[batch_key].to_numpy(dtype=str)
    _require_one_batch_per_plate(meta, batch_key, path)
    negcon = (meta[PERT_TYPE] == NEGCON).to_numpy(dtype=bool) if PERT_TYPE in meta else np.zeros(len(meta), bool)
    if PLATE_TYPE in meta:
        types = meta[PLATE_TYPE].to_numpy(dtype=str)
        return [_group(meta, name, np.flatnonzero(types == name), batch, negcon) for name in np.unique(types).tolist()]
    return [_group(meta, None, np.arange(len(meta)), batch, negcon)]


def _group(
    meta: pd.DataFrame, plate_type: str | None, index: np.ndarray, batch: np.ndarray, negcon: np.ndarray
) -> Group:
    wells = meta[WELL].to_numpy(dtype=str)
    plates = []
    for name, local in _positions(meta[PLATE].to_numpy(dtype=str)[index]).items():
        rows = index[local]
        rows = rows[np.argsort(wells[rows], kind="stable")]
        plates.append(Plate(name, str(batch[rows[0]]), rows, wells[rows]))
    batches = {name: index[local] for name, local in _positions(batch[index]).items()}
    return Group(plate_type, index, batch, negcon, batches, plates)


def _positions(labels: np.ndarray) -> dict[str, np.ndarray]:
    """Label to the positions holding it, labels sorted, positions ascending (a hash, not n x labels)."""
    return {str(name): local for name, local in pd.Series(labels).groupby(labels, sort=True).indices.items()}


def _require(metadata: pa.Table, column: str, path: Path) -> None:
    if column not in metadata.column_names:
        raise InputError(f"{path}: no column {column}")
    if metadata.column(column).null_count:
        raise InputError(f"{path}: column {column} has missing values")


def _require_one_batch_per_plate(meta: pd.DataFrame, batch_key: str, path: Path) -> None:
    counts = meta.groupby(PLATE)[batch_key].nunique()
    if (counts > 1).any():
        raise InputError(f"{path}: plate {counts.index[counts > 1][0]} lies in more than one {batch_key}")
