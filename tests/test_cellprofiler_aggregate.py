"""Single cells to wells: the reduction, the SQLite reader and its errors.

The comparisons with pycytominer's SingleCells on whole backends go through
the S3 server (test_cellprofiler_stage.py); the reference helpers live here.
"""

from __future__ import annotations

import shutil
import sqlite3
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.support.cellprofiler_synthetic import (
    SyntheticPlate,
    all_wells,
    write_synthetic_backend,
)
from workflow_scripts.cellprofiler.aggregate import (
    WellProfiles,
    aggregate_single_cells,
    summarize,
)
from workflow_scripts.cellprofiler.sqlite_backend import SqliteBackend, aggregate_sqlite

FIXTURES = {
    "cell-health": "cellprofiler/cell-health/test-SQ00014613.sqlite",
    "cytominer-database": "cellprofiler/pycytominer-tests/tests/test_data/cytominer_database_example_data/test_SQ00014613.sqlite",
}
TOLERANCE = 1e-9


def with_collate_columns(source: Path, target: Path) -> Path:
    """A copy with the unprefixed Metadata_* columns that collate adds and
    SingleCells groups by (the fixtures have only Image_Metadata_*)."""
    shutil.copy(source, target)
    with sqlite3.connect(target) as con:
        columns = {row[1] for row in con.execute("PRAGMA table_info(Image)")}
        for name in ("Plate", "Well", "Site"):
            if f"Metadata_{name}" not in columns:
                con.execute(f"ALTER TABLE Image ADD COLUMN Metadata_{name} TEXT")
                con.execute(f"UPDATE Image SET Metadata_{name} = Image_Metadata_{name}")
    con.close()
    return target


def pycytominer_profiles(sqlite: Path, operation: str) -> pd.DataFrame:
    from pycytominer.cyto_utils.cells import SingleCells

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        cells = SingleCells(f"sqlite:///{sqlite}", aggregation_operation=operation)
    try:
        return cells.aggregate_profiles()
    finally:
        cells.conn.close()
        cells.engine.dispose()


def assert_matches_pycytominer(ours: WellProfiles, reference: pd.DataFrame) -> None:
    reference = reference.set_index("Metadata_Well")
    with_cells = [w for w, n in zip(ours.wells, ours.object_counts) if n > 0]
    assert list(reference.index) == with_cells
    features = [c for c in reference.columns if not c.startswith("Metadata_")]
    assert ours.features == features
    rows = np.asarray(ours.object_counts) > 0
    expected = reference[features].to_numpy(dtype=np.float64)
    got = ours.values[rows]
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    assert np.nanmax(np.abs(got - expected)) <= TOLERANCE
    np.testing.assert_array_equal(ours.object_counts[rows], reference["Metadata_Object_Count"].to_numpy())


def aggregate_file(path: Path, operation: str = "median", label: str = "test backend") -> WellProfiles:
    with SqliteBackend(path, label) as backend:
        return aggregate_single_cells(backend, operation)


@pytest.fixture(scope="module")
def synthetic_backend(tmp_path_factory) -> tuple[Path, SyntheticPlate]:
    """2e4 cells over 24 wells, one listed in the Image table but empty."""
    plate = SyntheticPlate(n_cells=20_000, features=12, wells=all_wells()[:24], empty_wells=("A12",), sites=3)
    path = write_synthetic_backend(tmp_path_factory.mktemp("synthetic") / "SYN00001.sqlite", plate)
    return path, plate


def test_wells_without_cells_are_kept_with_count_zero(synthetic_backend):
    path, plate = synthetic_backend
    ours = aggregate_file(path, "median")
    assert ours.wells == sorted(plate.wells)
    empty = ours.wells.index("A12")
    assert ours.object_counts[empty] == 0
    assert np.isnan(ours.values[empty]).all()
    assert (np.delete(ours.object_counts, empty) > 0).all()


def test_worker_processes_give_the_same_profiles(synthetic_backend):
    path, _ = synthetic_backend
    alone = aggregate_file(path, "median")
    shared = aggregate_sqlite(path, "test backend", "median", workers=2)
    assert shared.wells == alone.wells and shared.features == alone.features
    np.testing.assert_array_equal(shared.object_counts, alone.object_counts)
    np.testing.assert_array_equal(shared.values, alone.values)


@pytest.mark.parametrize("operation", ["median", "mean"])
def test_summarize_follows_pandas(operation):
    """Even and odd counts, ties, NaN skipped, a column with no value at all."""
    rng = np.random.default_rng(3)
    cells = np.round(rng.normal(size=(10, 6)), 1)
    cells[[0, 3], 1] = np.nan
    cells[:7, 2] = np.nan
    cells[:, 3] = np.nan
    expected = getattr(pd.DataFrame(cells), operation)().to_numpy()
    got = summarize(cells, operation)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOLERANCE)
    assert summarize(np.array([[1.0], [4.0]]), "median")[0] == 2.5


def test_missing_table_is_named(shared_fixtures):
    """The real cell-locations backend has Image and Nuclei tables only."""
    path = shared_fixtures / "cellprofiler/pycytominer-tests/tests/test_data/cell_locations_example_data/test_BR00126114.sqlite"
    with pytest.raises(ValueError, match=r"plate BR00126114.*no table 'Cells'"):
        SqliteBackend(path, "plate BR00126114")


def small_backend(path: Path) -> Path:
    plate = SyntheticPlate(n_cells=300, features=3, wells=all_wells()[:4], empty_wells=())
    return write_synthetic_backend(path, plate)


def test_non_numeric_feature_is_named(tmp_path):
    path = small_backend(tmp_path / "text.sqlite")
    with sqlite3.connect(path) as con:
        con.execute("UPDATE Nuclei SET Nuclei_Intensity_Synthetic_0002 = 'n/a' WHERE rowid = 7")
    con.close()
    with pytest.raises(ValueError, match=r"plate X.*Nuclei.*'Nuclei_Intensity_Synthetic_0002'.*'n/a'"):
        aggregate_file(path, label="plate X")


@pytest.mark.parametrize("damage", ["zero-filled", "truncated"])
def test_damaged_backend_is_a_clear_error(tmp_path, damage):
    path = small_backend(tmp_path / "damaged.sqlite")
    data = path.read_bytes()
    path.write_bytes(bytes(len(data)) if damage == "zero-filled" else data[: len(data) // 3])
    with pytest.raises(ValueError, match=r"plate X.*(not a readable SQLite database|unreadable|no table)"):
        aggregate_file(path, label="plate X")


def test_cells_without_nuclei_is_an_error(tmp_path):
    path = small_backend(tmp_path / "broken.sqlite")
    with sqlite3.connect(path) as con:
        con.execute("DELETE FROM Nuclei WHERE ImageNumber IN (SELECT ImageNumber FROM Image WHERE Metadata_Well = 'A02')")
    con.close()
    with pytest.raises(ValueError, match=r"plate X.*'A02'.*no Nuclei"):
        aggregate_file(path, label="plate X")


def test_unknown_operation_is_refused(tmp_path):
    path = small_backend(tmp_path / "b.sqlite")
    with SqliteBackend(path, "plate X") as backend, pytest.raises(ValueError, match="median"):
        aggregate_single_cells(backend, "sum")


def test_backend_without_indexes_reads_the_same(synthetic_backend, tmp_path):
    """Backends not made by collate may lack its indexes; SQLite then builds its own."""
    path, _ = synthetic_backend
    bare = tmp_path / "bare.sqlite"
    shutil.copy(path, bare)
    with sqlite3.connect(bare) as con:
        for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'index'").fetchall():
            con.execute(f"DROP INDEX {name}")
    con.close()
    indexed, unindexed = aggregate_file(path, "median"), aggregate_file(bare, "median")
    np.testing.assert_array_equal(unindexed.values, indexed.values)
    np.testing.assert_array_equal(unindexed.object_counts, indexed.object_counts)


def test_empty_image_table_is_an_error(tmp_path):
    path = small_backend(tmp_path / "empty.sqlite")
    with sqlite3.connect(path) as con:
        con.execute("DELETE FROM Image")
    con.close()
    with pytest.raises(ValueError, match="plate X: the Image table is empty"):
        aggregate_file(path, label="plate X")


def test_sites_stored_as_numbers_match_qc_sites_as_text(shared_fixtures):
    """The cell-health backend stores Metadata_Site as integers; QC names sites as LoadData's text."""
    path = shared_fixtures / FIXTURES["cell-health"]
    with SqliteBackend(path, "plate SQ00014613", exclude={("A01", "2"), ("O18", "1")}) as backend:
        ours = aggregate_single_cells(backend, "median")
    assert ours.wells == ["A01", "O18"]
    np.testing.assert_array_equal(ours.fields_excluded, [1, 0])
    assert ours.object_counts[0] == 0 and ours.object_counts[1] > 0


def test_excluding_needs_a_site_column(tmp_path):
    path = small_backend(tmp_path / "nosite.sqlite")
    with sqlite3.connect(path) as con:
        con.execute("DROP INDEX plate_well_image_idx")
        for column in ("Metadata_Site", "Image_Metadata_Site"):
            con.execute(f"ALTER TABLE Image DROP COLUMN {column}")
    con.close()
    assert list(aggregate_file(path).fields_excluded) == [0, 0, 0, 0]
    with pytest.raises(ValueError, match="plate X, Image table: neither Metadata_Site nor Image_Metadata_Site"):
        SqliteBackend(path, "plate X", exclude={("A01", "1")})
