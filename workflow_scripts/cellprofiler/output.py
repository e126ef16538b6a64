"""Write ``cellprofiler/wells.parquet``: the stage's one output.

Metadata come first as text (pycytominer convention), then the cell count and
a flag for wells the Image table lists but that have no cells: such wells
stay in the table, with NaN features that the flag explains, because a
dropped well looks the same as a well never imaged. Which source was used,
its size and the aggregation travel in the file's key-value metadata. The file
appears only complete: written under a temporary name, then renamed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from workflow_scripts.atomic import atomic_path
from workflow_scripts.cellprofiler.aggregate import WellProfiles

METADATA_KEY = b"cellprofiler"
FLAG = "Metadata_Flag_NoCells"


def wells_table(profiles: WellProfiles, source: str, batch: str, plate: str) -> pa.Table:
    """The profiles as an Arrow table in the output's column order."""
    n = len(profiles.wells)
    counts = profiles.object_counts
    columns: dict[str, pa.Array] = {
        "Metadata_Source": pa.array([source] * n, pa.string()),
        "Metadata_Batch": pa.array([batch] * n, pa.string()),
        "Metadata_Plate": pa.array([plate] * n, pa.string()),
        "Metadata_Well": pa.array(profiles.wells, pa.string()),
        "Metadata_Object_Count": pa.array(counts, pa.int64()) if counts is not None else pa.nulls(n, pa.int64()),
        FLAG: pa.array(counts == 0, pa.bool_()) if counts is not None else pa.nulls(n, pa.bool_()),
    }
    values = np.asarray(profiles.values, dtype=np.float64)
    for j, name in enumerate(profiles.features):
        columns[name] = pa.array(values[:, j], pa.float64())
    return pa.table(columns)


def write_wells(table: pa.Table, provenance: dict[str, object], out: str | Path) -> Path:
    """Write atomically, with ``provenance`` as JSON under the 'cellprofiler' key."""
    out = Path(out)
    metadata = {**(table.schema.metadata or {}), METADATA_KEY: json.dumps(provenance).encode()}
    with atomic_path(out) as partial:
        pq.write_table(table.replace_schema_metadata(metadata), partial)
    return out


def read_provenance(path: str | Path) -> dict[str, object]:
    """The provenance a wells.parquet was written with."""
    return json.loads(pq.read_schema(path).metadata[METADATA_KEY])
