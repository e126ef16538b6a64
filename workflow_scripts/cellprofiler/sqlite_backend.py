"""Stream a single-cell SQLite backend well by well.

Backends run to tens of GB, so nothing here holds more than one well. The
Image table maps each image to its well; that map goes into a small
temporary table ordered by well, and one query per compartment joins it to
the compartment table. With collate's index on (TableNumber, ImageNumber)
SQLite walks the map and looks each image's cells up, so rows arrive grouped
by well with no sort; without the index SQLite builds a temporary one on disk.
Images of the sites QC excludes are left out of that map, so their cells are
never read. The file is opened read-only and immutable: the cache copy must
stay byte-identical to the bucket.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Collection, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Self

import numpy as np

from workflow_scripts.cellprofiler.aggregate import WellProfiles, aggregate_single_cells
from workflow_scripts.cellprofiler.backend_schema import COMPARTMENTS, feature_columns, metadata_column, quote
from workflow_scripts.cellprofiler.qc_exclusion import Site, count_by_well, site_text
from workflow_scripts.errors import InputError
from workflow_scripts.wells import well_name

log = logging.getLogger(__name__)

# Values fetched per round trip: enough to amortise the call, small enough
# that the Python objects of one fetch stay a few MB.
VALUES_PER_FETCH = 250_000


class SqliteBackend:
    """A backend opened for reading; use as a context manager."""

    def __init__(
        self,
        path: str | Path,
        label: str,
        wells: Collection[str] | None = None,
        exclude: Collection[Site] = frozenset(),
    ):
        """Open the backend; with ``wells``, read those wells only (a worker's share);
        the images of the ``exclude`` sites are not read."""
        self.label = label
        self.con = _connect(Path(path), label)
        try:
            self._describe(wells, frozenset(exclude))
        except sqlite3.DatabaseError as err:
            self.con.close()
            raise InputError(f"{label}: not a readable SQLite database ({err})") from err
        except BaseException:
            self.con.close()
            raise

    def _describe(self, wells: Collection[str] | None, exclude: frozenset[Site]) -> None:
        """Find the tables, the join keys, the wells, the images to read and the features."""
        query = "SELECT name FROM sqlite_master WHERE type = 'table'"
        tables = {row[0].lower(): row[0] for row in self.con.execute(query)}
        self.tables = {name: _require_table(tables, name, self.label) for name in ("Image", *COMPARTMENTS)}
        image_columns = self.columns("Image")
        self.join = _join_columns(image_columns, {c: self.columns(c) for c in COMPARTMENTS}, self.label)
        images = _image_rows(self.con, self.tables["Image"], image_columns, self.join, self.label, bool(exclude))
        if wells is not None:
            share = set(wells)
            images = [image for image in images if image[-2] in share]
        self.wells, self.fields_excluded = _load_well_map(self.con, images, self.join, exclude)
        self.features = {c: feature_columns(c, self.columns(c)) for c in COMPARTMENTS}

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.con.close()

    def columns(self, table: str) -> list[str]:
        """Column names of one of the backend's tables, in table order."""
        return [row[1] for row in self.con.execute(f"PRAGMA table_info({quote(self.tables[table])})")]

    def blocks(self, compartment: str) -> Iterator[tuple[int, np.ndarray]]:
        """Each well's cells of one compartment, in well order."""
        features = self.features[compartment]
        on = " AND ".join(f"c.{quote(k)} = w.{quote(k)}" for k in self.join)
        selected = "".join(f", c.{quote(f)}" for f in features)
        sql = (
            f"SELECT w.well{selected} FROM temp.image_well AS w "
            f"JOIN main.{quote(self.tables[compartment])} AS c ON {on} ORDER BY w.rowid"
        )
        where = f"{self.label}, table {self.tables[compartment]}"
        try:
            yield from _split_by_well(_fetch_arrays(self.con.execute(sql), features, where))
        except sqlite3.DatabaseError as err:
            raise InputError(f"{where}: unreadable ({err})") from err


def _connect(path: Path, label: str) -> sqlite3.Connection:
    if not path.is_file():
        raise FileNotFoundError(f"{label}: no file at {path}")
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True)


def _require_table(tables: dict[str, str], name: str, label: str) -> str:
    if name.lower() not in tables:
        raise InputError(f"{label}: no table {name!r} (tables: {sorted(tables.values())})")
    return tables[name.lower()]


def _join_columns(image: list[str], compartments: dict[str, list[str]], label: str) -> list[str]:
    """ImageNumber, with TableNumber first where every table has it (cytominer-database)."""
    for name, columns in {"Image": image, **compartments}.items():
        if "ImageNumber" not in columns:
            raise InputError(f"{label}: table {name} has no ImageNumber column")
    with_table = all("TableNumber" in cols for cols in (image, *compartments.values()))
    return ["TableNumber", "ImageNumber"] if with_table else ["ImageNumber"]


def _image_rows(
    con: sqlite3.Connection, table: str, columns: list[str], join: list[str], label: str, with_sites: bool
) -> list[tuple]:
    """(image keys..., well, site) of every image; the site is read only ``with_sites``
    (a backend without a site column can still be read when nothing is excluded)."""
    where = f"{label}, Image table"
    selected = [*join, metadata_column(columns, "Well", where)]
    if with_sites:
        selected.append(metadata_column(columns, "Site", where))
    rows = con.execute(f"SELECT {', '.join(quote(c) for c in selected)} FROM {quote(table)}").fetchall()
    if not rows:
        raise InputError(f"{label}: the Image table is empty")
    n = len(join)
    named = [
        (*row[:n], well_name(row[n], f"{label}, Image.{selected[n]}"), site_text(row[n + 1]) if with_sites else None)
        for row in rows
    ]
    if len({row[:n] for row in named}) != len(named):
        raise InputError(f"{label}: Image table lists an image ({', '.join(join)}) twice")
    return named


def _load_well_map(
    con: sqlite3.Connection, images: list[tuple], join: list[str], exclude: frozenset[Site]
) -> tuple[list[str], list[int]]:
    """Fill temp.image_well (image keys, well index) in well order with the images to read.

    Returns every well of ``images``, a well whose sites are all excluded
    too (it keeps its row, without cells), and per well its excluded sites.
    """
    wells = sorted({image[-2] for image in images})
    index = {well: i for i, well in enumerate(wells)}
    left_out = {image[-2:] for image in images if image[-2:] in exclude}
    kept = [(*image[:-2], index[image[-2]]) for image in images if image[-2:] not in exclude]
    keys = ", ".join(quote(k) for k in join)
    con.execute(f"CREATE TEMP TABLE image_well ({keys}, well INTEGER)")
    marks = ", ".join("?" * (len(join) + 1))
    con.executemany(f"INSERT INTO temp.image_well VALUES ({marks})", sorted(kept, key=lambda r: r[-1]))
    return wells, count_by_well(wells, left_out)


def _fetch_arrays(cursor: sqlite3.Cursor, features: list[str], where: str) -> Iterator[np.ndarray]:
    """The query's rows as float64 matrices; NULL becomes NaN, text is an error."""
    rows_per_fetch = max(16, VALUES_PER_FETCH // (len(features) + 1))
    while rows := cursor.fetchmany(rows_per_fetch):
        try:
            yield np.array(rows, dtype=np.float64)
        except (TypeError, ValueError):
            raise _non_numeric(rows, features, where) from None


def _non_numeric(rows: Sequence[tuple], features: list[str], where: str) -> ValueError:
    for row in rows:
        for name, value in zip(features, row[1:]):
            try:
                float(value if value is not None else "nan")
            except (TypeError, ValueError):
                return ValueError(f"{where}: feature column {name!r} holds non-numeric value {value!r}")
    return ValueError(f"{where}: rows cannot be read as numbers")


def _split_by_well(arrays: Iterator[np.ndarray]) -> Iterator[tuple[int, np.ndarray]]:
    """Cut row blocks (well index in column 0) into one matrix per well.

    Rows come ordered by well, so a well is complete once a later well starts.
    """
    current, parts = -1, []
    for block in arrays:
        wells = block[:, 0].astype(np.int64)
        starts = np.flatnonzero(np.diff(wells, prepend=-1))
        for start, stop in zip(starts, [*starts[1:], len(wells)]):
            if wells[start] != current:
                if parts:
                    yield current, np.concatenate(parts)
                current, parts = int(wells[start]), []
            parts.append(block[start:stop, 1:])
    if parts:
        yield current, np.concatenate(parts)


def _aggregate_share(
    path: Path, label: str, operation: str, wells: list[str] | None, exclude: frozenset[Site]
) -> WellProfiles:
    with SqliteBackend(path, label, wells, exclude) as backend:
        return aggregate_single_cells(backend, operation)


def aggregate_sqlite(
    path: str | Path, label: str, operation: str, workers: int, exclude: Collection[Site] = frozenset()
) -> WellProfiles:
    """A whole backend's well profiles, with ``workers`` processes each reading a
    contiguous share of the wells, the ``exclude`` sites left out.

    Reading is bound by turning SQLite values into Python objects, one core
    per process, so on a CPU node the speed grows with the workers; memory
    grows too, by one process's working set (a well at a time) each.
    """
    path, exclude = Path(path), frozenset(exclude)
    if workers <= 1:
        return _aggregate_share(path, label, operation, None, exclude)
    with SqliteBackend(path, label) as backend:
        log.info("%s: %d wells over %d worker processes", label, len(backend.wells), workers)
        shares = [list(s) for s in np.array_split(np.array(backend.wells, dtype=object), workers) if len(s)]
    with ProcessPoolExecutor(len(shares), mp_context=get_context("spawn")) as pool:
        parts = list(pool.map(_aggregate_share, *zip(*[(path, label, operation, s, exclude) for s in shares])))
    wells = [well for part in parts for well in part.wells]
    return WellProfiles(
        wells,
        np.concatenate([p.object_counts for p in parts]),
        parts[0].features,
        np.vstack([p.values for p in parts]),
        np.concatenate([p.fields_excluded for p in parts]),
    )
