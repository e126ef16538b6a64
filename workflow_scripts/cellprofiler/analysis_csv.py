"""Read per-site CellProfiler CSVs (``analysis/{plate}-{well}-{site}/``) well by well.

Each site folder holds Image.csv and one CSV per compartment with unprefixed
column names; cytominer-database would prefix them with the compartment
('AreaShape_Area' in Cells.csv becomes 'Cells_AreaShape_Area'), and so does
this reader, so the profiles match those made from the SQLite backend. Only
one well's files are in memory at a time. Site folders of the sites QC
excludes are never read.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from workflow_scripts.cellprofiler.backend_schema import COMPARTMENTS, NOT_FEATURES, metadata_column
from workflow_scripts.cellprofiler.qc_exclusion import Site, count_by_well, site_text
from workflow_scripts.errors import InputError
from workflow_scripts.wells import well_name

KEYS = ("ImageNumber", "ObjectNumber")


def _read(path: Path) -> pa.Table:
    try:
        return pacsv.read_csv(path)
    except (pa.ArrowInvalid, OSError) as err:
        raise InputError(f"{path}: unreadable CSV ({err})") from err


def _only(values: set, what: str, path: Path) -> object:
    """The one value of a folder's Image.csv column; more than one means a folder that is not one site."""
    if len(values) != 1:
        raise InputError(f"{path}: expected one {what} per site folder, found {sorted(values, key=str)}")
    return values.pop()


def _site_of(folder: Path, with_site: bool) -> tuple[str, str | None]:
    """(well, site) of a site folder, from its Image.csv; the site is read only
    ``with_site`` (folders without a site column can be read when nothing is excluded)."""
    path = folder / "Image.csv"
    image = _read(path)
    column = metadata_column(image.column_names, "Well", str(path))
    well = _only({well_name(w, str(path)) for w in image.column(column).to_pylist()}, "well", path)
    if not with_site:
        return well, None
    column = metadata_column(image.column_names, "Site", str(path))
    return well, _only({site_text(s) for s in image.column(column).to_pylist()}, "site", path)


def _non_keys(columns: list[str]) -> list[str]:
    return [c for c in columns if c not in KEYS]


def _features(compartment: str, columns: list[str]) -> dict[str, str]:
    """Prefixed feature name for each CSV column that is a feature."""
    named = {c: f"{compartment}_{c}" for c in columns}
    return {c: name for c, name in named.items() if name not in NOT_FEATURES}


def _matrix(table: pa.Table, columns: list[str], path: Path) -> np.ndarray:
    """Feature columns as float64 (missing values as NaN); text is an error."""
    out = np.empty((table.num_rows, len(columns)))
    for j, column in enumerate(columns):
        values = table.column(column)
        if not (pa.types.is_integer(values.type) or pa.types.is_floating(values.type) or pa.types.is_null(values.type)):
            raise InputError(f"{path}: feature column {column!r} is not numeric ({values.type})")
        out[:, j] = values.cast(pa.float64()).to_numpy(zero_copy_only=False)
    return out


class AnalysisCsvs:
    """The site folders of one plate, grouped by well, those of ``exclude`` sites set aside.

    A well whose sites are all excluded stays among the wells, without cells.
    """

    def __init__(self, folders: list[Path], label: str, exclude: Collection[Site] = frozenset()):
        if not folders:
            raise InputError(f"{label}: no analysis site folders")
        self.label = label
        by_well: dict[str, list[Path]] = {}
        left_out: set[Site] = set()
        for folder in sorted(folders):
            site = _site_of(folder, bool(exclude))
            kept = by_well.setdefault(site[0], [])
            if site in exclude:
                left_out.add(site)
            else:
                kept.append(folder)
        self.wells = sorted(by_well)
        self._folders = [by_well[w] for w in self.wells]
        self.fields_excluded = count_by_well(self.wells, left_out)
        first = min(folders)
        self._layout = {c: _non_keys(_read(first / f"{c}.csv").column_names) for c in COMPARTMENTS}
        self._columns = {c: _features(c, names) for c, names in self._layout.items()}
        self.features = {c: list(names.values()) for c, names in self._columns.items()}

    def _site(self, folder: Path, compartment: str) -> np.ndarray:
        """One site's cells; its columns must be those of the plate's first site."""
        path = folder / f"{compartment}.csv"
        table = _read(path)
        expected = self._layout[compartment]
        found = _non_keys(table.column_names)
        if found != expected:
            extra, missing = set(found) - set(expected), set(expected) - set(found)
            raise InputError(
                f"{path}: columns differ from the plate's first site "
                f"(extra {sorted(extra)[:3]}, missing {sorted(missing)[:3]})"
            )
        return _matrix(table, list(self._columns[compartment]), path)

    def blocks(self, compartment: str) -> Iterator[tuple[int, np.ndarray]]:
        """Each well's cells of one compartment, all its kept sites together."""
        for index, folders in enumerate(self._folders):
            if folders:
                yield index, np.concatenate([self._site(folder, compartment) for folder in folders])
