"""The columns of ``cellprofiler/wells.parquet``: the stage's one output.

Metadata come first as text (pycytominer convention), then the cell count, a
flag for wells the Image table lists but that have no cells (none at all, or
none left once QC's excluded fields are out), and the number of fields QC
excluded: such wells stay in the table, with NaN features that the flag
explains, because a dropped well looks the same as a well never imaged. Which
source was used, its size, the aggregation and what QC exclusion did travel in
the file's key-value metadata under ``STAGE``, written with
``workflow_scripts.provenance.write_table`` (atomically, like every stage's table),
with the features that lack a value in wells that have cells (``nan_features``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from workflow_scripts.cellprofiler.aggregate import WellProfiles

STAGE = "cellprofiler"
VERSIONED_PACKAGES = ("workflow_scripts", "numpy", "pyarrow")
FLAG = "Metadata_Flag_NoCells"
EXCLUDED = "Metadata_n_fields_excluded"


def _counts(values: np.ndarray | None, n: int) -> pa.Array:
    """Per-well counts, or nulls where the source cannot say."""
    return pa.array(values, pa.int64()) if values is not None else pa.nulls(n, pa.int64())


def wells_table(profiles: WellProfiles, source: str, batch: str, plate: str) -> pa.Table:
    """The profiles as an Arrow table in the output's column order."""
    n = len(profiles.wells)
    counts = profiles.object_counts
    columns: dict[str, pa.Array] = {
        "Metadata_Source": pa.array([source] * n, pa.string()),
        "Metadata_Batch": pa.array([batch] * n, pa.string()),
        "Metadata_Plate": pa.array([plate] * n, pa.string()),
        "Metadata_Well": pa.array(profiles.wells, pa.string()),
        "Metadata_Object_Count": _counts(counts, n),
        FLAG: pa.array(counts == 0, pa.bool_()) if counts is not None else pa.nulls(n, pa.bool_()),
        EXCLUDED: _counts(profiles.fields_excluded, n),
    }
    values = np.asarray(profiles.values, dtype=np.float64)
    for j, name in enumerate(profiles.features):
        columns[name] = pa.array(values[:, j], pa.float64())
    return pa.table(columns)


def nan_features(profiles: WellProfiles) -> dict[str, Any]:
    """The features without a finite value in some or all wells that have cells.

    They stay NaN in the table (pycytominer's numbers, and feature selection
    drops them across plates), so they are named here instead of going
    unnoticed. Wells without cells are NaN throughout and flagged; they are
    not counted.
    """
    with_cells = np.ones(len(profiles.wells), bool) if profiles.object_counts is None else profiles.object_counts > 0
    values = np.asarray(profiles.values, dtype=np.float64)[with_cells]
    missing = (~np.isfinite(values)).sum(axis=0)
    wells = int(with_cells.sum())
    return {
        "wells_with_cells": wells,
        "in_every_well": [f for f, n in zip(profiles.features, missing) if wells and n == wells],
        "in_some_wells": {f: int(n) for f, n in zip(profiles.features, missing) if 0 < n < wells},
    }
