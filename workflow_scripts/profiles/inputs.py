"""The well tables the profiles stage reads, checked before any work.

A plate's ``wells.parquet`` (DINO or CellProfiler) must hold wells and
numeric features and belong to the plate; the batch's tables that
``wellpos`` averages must belong to the same batch and carry the plate's
features. Each failure names the plate and the file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pyarrow as pa

from workflow_scripts.errors import InputError
from workflow_scripts.fetch.gallery import PlateRef
from workflow_scripts.profiles.columns import feature_columns


def read_wells(path: Path, plate: PlateRef) -> pd.DataFrame:
    """The plate's well profiles; an empty plate or one without numeric features is an error."""
    wells = pd.read_parquet(path)
    features = feature_columns(wells)
    if wells.empty or not features:
        raise InputError(
            f"plate {plate.plate}: {path} holds no well profiles ({len(wells)} wells, {len(features)} features)"
        )
    text = [c for c, dtype in wells[features].dtypes.items() if not pd.api.types.is_numeric_dtype(dtype)]
    if text:
        raise InputError(f"plate {plate.plate}: {path}: feature column(s) {', '.join(text[:5])} are not numeric")
    _check_key(wells, "Metadata_Plate", plate.plate, path, plate)
    return wells


def read_batch(paths: Sequence[Path], wells: pd.DataFrame, features: Sequence[str], plate: PlateRef) -> pd.DataFrame:
    """``Metadata_Plate``, ``Metadata_Well`` and the features of every plate of the batch, the plate's own included once."""
    columns = ["Metadata_Batch", "Metadata_Plate", "Metadata_Well", *features]
    tables = [wells[columns]]
    for path in paths:
        try:
            other = pd.read_parquet(path, columns=columns)
        except (pa.ArrowException, KeyError, ValueError) as error:
            raise InputError(f"plate {plate.plate}: batch wells {path} lack the plate's columns: {error}") from error
        _check_key(other, "Metadata_Batch", plate.batch, path, plate)
        if plate.plate not in set(other["Metadata_Plate"].astype(str)):
            tables.append(other)
    return pd.concat(tables, ignore_index=True)


def _check_key(table: pd.DataFrame, column: str, expected: str, path: Path, plate: PlateRef) -> None:
    """Every row of ``table`` has ``column`` == ``expected``."""
    if column not in table.columns:
        raise InputError(f"plate {plate.plate}: {path} has no {column} column")
    found = sorted(set(table[column].astype(str)) - {expected})
    if found:
        raise InputError(f"plate {plate.plate}: {path} holds {column} {', '.join(found[:3])}, not {expected}")
