"""Well-level tables taken as they are: the backend CSV that collate writes
and the gallery's own ``profiles/{plate}.parquet``.

They are already aggregated (by whoever made them), so only their shape is
brought to this stage's contract: wells as 'A01', one row per well, the
compartment features as floats, the cell count where the table has one. Being
aggregated, they cannot leave out the fields QC excludes.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from workflow_scripts.cellprofiler.aggregate import WellProfiles
from workflow_scripts.cellprofiler.backend_schema import COMPARTMENTS
from workflow_scripts.errors import InputError
from workflow_scripts.wells import well_name

log = logging.getLogger(__name__)

COUNT = "Metadata_Object_Count"


def _read(path: Path, kind: str) -> pa.Table:
    try:
        return pq.read_table(path) if kind == "profiles" else pacsv.read_csv(path)
    except (pa.ArrowInvalid, OSError) as err:
        raise InputError(f"{path}: unreadable {kind} table ({err})") from err


def _feature_names(table: pa.Table, path: Path) -> list[str]:
    prefixes = tuple(f"{c}_" for c in COMPARTMENTS)
    features = [c for c in table.column_names if c.startswith(prefixes)]
    if not features:
        raise InputError(f"{path}: no {'/'.join(prefixes)} feature columns")
    ignored = [c for c in table.column_names if not c.startswith(("Metadata_", *prefixes))]
    if ignored:
        log.warning(
            "%s: ignoring %d columns that are neither metadata nor features, e.g. %s", path, len(ignored), ignored[:3]
        )
    for name in features:
        kind = table.schema.field(name).type
        if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_null(kind)):
            raise InputError(f"{path}: feature column {name!r} is not numeric ({kind})")
    return features


def _counts(table: pa.Table, path: Path) -> np.ndarray | None:
    if COUNT not in table.column_names:
        log.warning("%s: no %s column; cell counts are left empty", path, COUNT)
        return None
    column = table.column(COUNT)
    if column.null_count or not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
        raise InputError(f"{path}: {COUNT} must be a complete numeric column")
    counts = column.to_numpy(zero_copy_only=False)
    if np.any(counts != np.round(counts)) or np.any(counts < 0):
        raise InputError(f"{path}: {COUNT} holds values that are not cell counts")
    return counts.astype(np.int64)


def read_well_table(path: str | Path, kind: str) -> WellProfiles:
    """A finished well-level table ('csv' or 'profiles'), sorted by well."""
    path = Path(path)
    table = _read(path, kind)
    if "Metadata_Well" not in table.column_names:
        raise InputError(f"{path}: no Metadata_Well column")
    wells = [well_name(w, f"{path}, Metadata_Well") for w in table.column("Metadata_Well").to_pylist()]
    if len(set(wells)) != len(wells):
        raise InputError(f"{path}: a well appears more than once; expected one row per well")
    features = _feature_names(table, path)
    values = np.column_stack([table.column(f).cast(pa.float64()).to_numpy(zero_copy_only=False) for f in features])
    counts = _counts(table, path)
    order = np.argsort(wells, kind="stable")
    return WellProfiles(
        [wells[i] for i in order], None if counts is None else counts[order], features, values[order], None
    )
