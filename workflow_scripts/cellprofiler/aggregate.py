"""Single cells to well profiles: the numbers of pycytominer's
``SingleCells.aggregate_profiles()``, computed one well at a time.

Readers hand over each well's cells as a float matrix, so memory holds one
well, never a compartment table. (A grouped median in DuckDB is a holistic
aggregate: it would keep every value of the table in memory at once, and
DuckDB reads SQLite only through an extension fetched at run time.) The
reduction copies pandas' semantics exactly, which is what pycytominer runs:
missing values are skipped, the median of an even count is ``(a + b) / 2`` of
the two middle values, a column with no values gives NaN.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from workflow_scripts.cellprofiler.backend_schema import COMPARTMENTS
from workflow_scripts.errors import InputError

OPERATIONS = ("median", "mean")


@dataclass
class WellProfiles:
    """One plate's profiles: a row per well, a column per feature.

    ``object_counts`` is None when the source (a finished profile table) does
    not say how many cells each well had; ``fields_excluded`` (per well, the
    QC-excluded fields left out) is None when the source could not leave any
    out, being aggregated per well already.
    """

    wells: list[str]
    object_counts: np.ndarray | None
    features: list[str]
    values: np.ndarray
    fields_excluded: np.ndarray | None


class SingleCellSource(Protocol):
    """What a single-cell reader offers: the plate's wells (from its image
    table, so that wells without cells are known), the features of each
    compartment, per well the QC-excluded fields it left out, and per
    compartment the cells of one well at a time."""

    label: str
    wells: list[str]
    features: Mapping[str, list[str]]
    fields_excluded: list[int]

    def blocks(self, compartment: str) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (index into ``wells``, cells x features float64 matrix), each well once."""
        ...


def check_operation(operation: str) -> str:
    """Refuse an unknown operation before hours of reading, not after."""
    if operation not in OPERATIONS:
        raise InputError(f"aggregation operation must be one of {OPERATIONS}, not {operation!r}")
    return operation


def _medians(columns: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Per row of ``columns`` (features x cells), the median of its non-NaN values.

    ``np.partition`` puts NaN last, so among rows with the same number of
    values the two middle order statistics sit at the same positions.
    """
    out = np.full(columns.shape[0], np.nan)
    for n in np.unique(counts):
        if n == 0:
            continue
        rows = np.flatnonzero(counts == n)
        lo, hi = (n - 1) // 2, n // 2
        middle = np.partition(columns[rows], (lo, hi), axis=1)
        out[rows] = (middle[:, lo] + middle[:, hi]) / 2
    return out


def summarize(cells: np.ndarray, operation: str) -> np.ndarray:
    """Median or mean of each column of a cells x features matrix, skipping NaN."""
    columns = np.ascontiguousarray(cells.T)
    counts = np.count_nonzero(~np.isnan(columns), axis=1)
    if operation == "median":
        return _medians(columns, counts)
    sums = np.nansum(columns, axis=1)
    return np.divide(sums, counts, out=np.full(len(counts), np.nan), where=counts > 0)


def aggregate_compartment(source: SingleCellSource, compartment: str, operation: str) -> tuple[np.ndarray, np.ndarray]:
    """(wells x features values, objects per well) of one compartment.

    Wells that get no block keep NaN values and a count of 0.
    """
    n_features = len(source.features[compartment])
    values = np.full((len(source.wells), n_features), np.nan)
    counts = np.zeros(len(source.wells), dtype=np.int64)
    seen = np.zeros(len(source.wells), dtype=bool)
    for well, cells in source.blocks(compartment):
        if seen[well]:
            raise RuntimeError(f"{source.label}: {compartment} of well {source.wells[well]} read twice")
        seen[well] = True
        counts[well] = cells.shape[0]
        if cells.shape[0]:
            values[well] = summarize(cells, operation)
    return values, counts


def aggregate_single_cells(source: SingleCellSource, operation: str) -> WellProfiles:
    """Every well of the plate, compartments side by side in ``COMPARTMENTS`` order.

    The object count is the number of cells, as pycytominer counts it. A well
    with cells but no objects of another compartment means a broken backend
    (CellProfiler derives all three from the same nuclei), so it is an error
    rather than a row of silent NaNs.
    """
    check_operation(operation)
    blocks, features = [], []
    cell_counts = None
    for compartment in COMPARTMENTS:
        values, counts = aggregate_compartment(source, compartment, operation)
        if cell_counts is None:
            cell_counts = counts
        else:
            broken = np.flatnonzero((cell_counts > 0) & (counts == 0))
            if broken.size:
                wells = [source.wells[i] for i in broken[:5]]
                raise InputError(f"{source.label}: wells {wells} have Cells but no {compartment} objects")
        blocks.append(values)
        features += source.features[compartment]
    excluded = np.asarray(source.fields_excluded, dtype=np.int64)
    return WellProfiles(list(source.wells), cell_counts, features, np.hstack(blocks), excluded)
