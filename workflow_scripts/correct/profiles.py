"""The profile tables the correct stage reads and writes.

Profiles follow the pycytominer convention: ``Metadata_*`` columns, then
float features. The features are held as one float64 matrix in column
(Fortran) order, so reading fills whole columns, writing hands each column to
Arrow without a copy, and every transform works in float64 (locked runs must
reproduce earlier rows bit for bit).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from workflow_scripts.errors import InputError
from workflow_scripts.logs import some
from workflow_scripts.profiles.columns import feature_columns
from workflow_scripts.profiles.table import profile_table
from workflow_scripts.provenance import write_table


@dataclass(frozen=True)
class Profiles:
    """One profile table: its metadata as read, and its features as a float64 matrix."""

    path: Path
    metadata: pa.Table
    values: np.ndarray
    features: list[str]


def read_profiles(path: Path) -> Profiles:
    """Read ``path``; an error naming the file and columns for non-numeric, null or NaN features."""
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as error:
        raise InputError(f"{path}: cannot read the profiles ({error})") from error
    names = table.column_names
    features = feature_columns(names)
    if table.num_rows == 0 or not features:
        raise InputError(f"{path}: no profiles ({table.num_rows} rows, {len(features)} feature columns)")
    wrong = [name for name in features if not _numeric(table.schema.field(name).type)]
    if wrong:
        raise InputError(f"{path}: feature columns are not numeric: {some(wrong)}")
    values = np.empty((table.num_rows, len(features)), dtype=np.float64, order="F")
    for position, name in enumerate(features):
        values[:, position] = table.column(name).to_numpy()  # nulls become NaN
    nan = np.isnan(values).any(axis=0)
    if nan.any():
        raise InputError(f"{path}: feature columns hold NaN or nulls: {some(np.asarray(features)[nan])}")
    metadata = table.drop_columns(features)
    return Profiles(Path(path), metadata, values, features)


def write_corrected(
    path: Path, profiles: Profiles, values: np.ndarray, features: Sequence[str], provenance: dict
) -> None:
    """The input's metadata columns, rows and schema metadata, with ``values`` as the features."""
    table = profile_table(profiles.metadata, features, values)
    inherited = {key: value for key, value in (profiles.metadata.schema.metadata or {}).items() if key != b"pandas"}
    write_table(table.replace_schema_metadata(inherited), path, "correct", provenance)


def require_variation(scale: np.ndarray, features: Sequence[str], where: str) -> None:
    """An error naming the features whose spread is zero ``where`` (they cannot be scaled)."""
    flat = scale == 0
    if flat.any():
        raise InputError(f"{where}: features without variation, drop them upstream: {some(np.asarray(features)[flat])}")


def _numeric(kind: pa.DataType) -> bool:
    return pa.types.is_floating(kind) or pa.types.is_integer(kind)
