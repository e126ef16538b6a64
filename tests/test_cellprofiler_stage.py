"""The stage end to end on SQLite backends served by a real S3 server: the
fetch stage's ``backend`` action downloads them, the CellProfiler stage
aggregates and writes wells.parquet, compared with pycytominer's SingleCells
on the same backend (real ones from ../shared/fixtures and a generated one of
1e5 cells; median and mean; max abs difference <= 1e-9, NaN where pycytominer
has NaN, the same cell counts), with and without the fields QC excludes."""

from __future__ import annotations

import itertools
import json
import logging
import shutil
import sqlite3
from collections.abc import Collection
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.support.cellprofiler_synthetic import (
    SyntheticPlate,
    all_wells,
    write_qc_fields,
    write_synthetic_backend,
)
from tests.test_cellprofiler_aggregate import (
    FIXTURES,
    assert_matches_pycytominer,
    pycytominer_profiles,
    with_collate_columns,
)
from workflow_scripts.cellprofiler.__main__ import main as cellprofiler_main
from workflow_scripts.cellprofiler.aggregate import WellProfiles
from workflow_scripts.cellprofiler.output import STAGE
from workflow_scripts.demo.s3server import upload_tree
from workflow_scripts.fetch.backend import backend_key
from workflow_scripts.fetch.gallery import PlateRef
from workflow_scripts.provenance import read_provenance

DATASET, SOURCE = "cpg0016-jump", "source_4"
METADATA = [
    "Metadata_Source",
    "Metadata_Batch",
    "Metadata_Plate",
    "Metadata_Well",
    "Metadata_Object_Count",
    "Metadata_Flag_NoCells",
    "Metadata_n_fields_excluded",
]
_buckets = itertools.count()


def new_bucket(s3_server) -> str:
    """A fresh public-read bucket per test: the server is shared by the session."""
    name = f"cp-stage-{next(_buckets)}"
    s3_server.admin_client().create_bucket(Bucket=name, ACL="public-read")
    return name


@pytest.fixture
def credentials(monkeypatch):
    """What a signed request needs; the local server accepts any."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")


def plate_ref(batch: str, plate: str) -> PlateRef:
    return PlateRef(DATASET, SOURCE, batch, plate)


def key(batch: str, plate: str, kind: str) -> str:
    return backend_key(plate_ref(batch, plate), kind)


def put(s3_server, bucket: str, path: Path, key: str) -> None:
    s3_server.admin_client().put_object(Bucket=bucket, Key=key, Body=path.read_bytes(), ACL="public-read")


def settings(s3_server, bucket: str, tmp_path: Path, anonymous: bool = True, **cellprofiler) -> dict:
    """The config sections the two stages read, as a workflow run passes them."""
    return {
        "gallery": {"bucket": bucket, "endpoint_url": s3_server.endpoint_url, "anonymous": anonymous},
        "cache_dir": str(tmp_path / "cache"),
        "cellprofiler": cellprofiler,
    }


def aggregate(config: dict, tmp_path: Path, batch: str, plate: str, qc: Path, threads: int = 1) -> int:
    """``python -m workflow_scripts.cellprofiler`` (it fetches the plate's output first); its exit status."""
    plate_id = f"{DATASET}/{SOURCE}/{batch}/{plate}"
    argv = [
        "--settings", json.dumps(config), "--plate", plate_id, "--threads", str(threads), "--input", f"qc={qc}",
        "--output", f"backend={manifest_path(tmp_path)}",
        "--output", f"wells={tmp_path / 'cellprofiler' / 'wells.parquet'}",
    ]  # fmt: skip
    return cellprofiler_main(argv)


def manifest_path(tmp_path: Path) -> Path:
    return tmp_path / "fetch" / "cellprofiler.parquet"


def run_stage(
    s3_server,
    bucket: str,
    tmp_path: Path,
    batch: str,
    plate: str,
    *,
    excluded: Collection[tuple[str, str]] = (),
    anonymous: bool = True,
    threads: int = 1,
    **cellprofiler,
) -> Path:
    """Fetch and aggregate one plate, QC excluding the ``excluded`` (well, site) pairs; its wells.parquet."""
    config = settings(s3_server, bucket, tmp_path, anonymous, **cellprofiler)
    qc = write_qc_fields(tmp_path / "qc" / "fields.parquet", plate, excluded, excluded)
    assert aggregate(config, tmp_path, batch, plate, qc, threads) == 0
    return tmp_path / "cellprofiler" / "wells.parquet"


def as_profiles(table: pd.DataFrame) -> WellProfiles:
    features = [c for c in table.columns if not c.startswith("Metadata_")]
    counts = table["Metadata_Object_Count"].to_numpy()
    excluded = table["Metadata_n_fields_excluded"].to_numpy()
    return WellProfiles(list(table["Metadata_Well"]), counts, features, table[features].to_numpy(np.float64), excluded)


@pytest.mark.parametrize("operation", ["median", "mean"])
@pytest.mark.parametrize("fixture", sorted(FIXTURES))
def test_real_backends_through_s3_match_pycytominer(shared_fixtures, s3_server, tmp_path, fixture, operation):
    bucket = new_bucket(s3_server)
    backend = shared_fixtures / FIXTURES[fixture]
    put(s3_server, bucket, backend, key("b1", "SQ00014613", "sqlite"))
    out = run_stage(s3_server, bucket, tmp_path, "b1", "SQ00014613", operation=operation)

    table = pd.read_parquet(out)
    assert list(table.columns[:7]) == METADATA
    assert (table["Metadata_Source"] == "source_4").all() and (table["Metadata_Plate"] == "SQ00014613").all()
    assert not table["Metadata_Flag_NoCells"].any()
    assert (table["Metadata_n_fields_excluded"] == 0).all()
    features = table.columns[7:]
    assert all(table[c].dtype == np.float64 for c in features)
    reference = pycytominer_profiles(with_collate_columns(backend, tmp_path / "ref.sqlite"), operation)
    assert_matches_pycytominer(as_profiles(table), reference)
    provenance = read_provenance(out, STAGE)
    assert provenance["source"] == "sqlite" and provenance["operation"] == operation
    assert provenance["bytes"] == backend.stat().st_size
    assert provenance["url"].endswith("/workspace/backend/b1/SQ00014613/SQ00014613.sqlite")
    assert provenance["qc_exclusion"] == {
        "sites_excluded_by_qc": 0,
        "applied": True,
        "fields_excluded": 0,
        "sites_not_in_source": 0,
    }


@pytest.fixture(scope="module")
def synthetic_gallery(tmp_path_factory) -> tuple[Path, SyntheticPlate]:
    """A gallery tree holding one generated backend: 1e5 cells over 24 wells,
    one of them listed in the Image table but empty, 12 features per
    compartment. Few wells keep pycytominer, which queries well by well, fast."""
    plate = SyntheticPlate(n_cells=100_000, features=12, wells=all_wells()[:24], empty_wells=("A12",), sites=3)
    root = tmp_path_factory.mktemp("gallery")
    backend = root / key("b1", plate.plate, "sqlite")
    backend.parent.mkdir(parents=True)
    write_synthetic_backend(backend, plate)
    return root, plate


@pytest.mark.parametrize("operation", ["median", "mean"])
def test_synthetic_backend_through_s3_matches_pycytominer(s3_server, synthetic_gallery, tmp_path, operation):
    root, plate = synthetic_gallery
    bucket = new_bucket(s3_server)
    upload_tree(s3_server.admin_client(), bucket, root)
    out = run_stage(s3_server, bucket, tmp_path, "b1", plate.plate, operation=operation)
    ours = as_profiles(pd.read_parquet(out))
    assert ours.object_counts.sum() == plate.n_cells
    assert_matches_pycytominer(ours, pycytominer_profiles(root / key("b1", plate.plate, "sqlite"), operation))


def without_sites(backend: Path, sites: Collection[tuple[str, str]], target: Path) -> Path:
    """A copy of ``backend`` without the images (and their objects) of ``sites``."""
    shutil.copy(backend, target)
    with sqlite3.connect(target) as con:
        con.execute("CREATE TEMP TABLE gone (well TEXT, site TEXT)")
        con.executemany("INSERT INTO gone VALUES (?, ?)", sorted(sites))
        images = "SELECT ImageNumber FROM Image WHERE (Metadata_Well, Metadata_Site) IN (SELECT well, site FROM gone)"
        for table in ("Cells", "Cytoplasm", "Nuclei"):
            con.execute(f"DELETE FROM {table} WHERE ImageNumber IN ({images})")
        con.execute(f"DELETE FROM Image WHERE ImageNumber IN ({images})")
    con.close()
    return target


@pytest.mark.parametrize("threads", [1, 2])
def test_qc_excluded_sites_are_left_out_and_counted(s3_server, synthetic_gallery, tmp_path, threads):
    """One site of A01 and all three of A02 excluded: A01 is aggregated from its
    other two sites, A02 keeps its row without cells; a site QC names that the
    backend lacks (A03 site 0: the backend counts from 1) is not counted."""
    root, plate = synthetic_gallery
    bucket = new_bucket(s3_server)
    upload_tree(s3_server.admin_client(), bucket, root)
    left_out = {("A01", "2"), ("A02", "1"), ("A02", "2"), ("A02", "3")}
    excluded = left_out | {("A03", "0")}
    out = run_stage(s3_server, bucket, tmp_path, "b1", plate.plate, excluded=excluded, threads=threads)

    table = pd.read_parquet(out).set_index("Metadata_Well")
    assert list(table.index) == sorted(plate.wells)
    n_excluded = table["Metadata_n_fields_excluded"]
    assert n_excluded["A01"] == 1 and n_excluded["A02"] == 3 and n_excluded.drop(["A01", "A02"]).eq(0).all()
    assert table.loc["A02", "Metadata_Object_Count"] == 0 and table.loc["A02", "Metadata_Flag_NoCells"]
    reference = pycytominer_profiles(
        without_sites(root / key("b1", plate.plate, "sqlite"), left_out, tmp_path / "ref.sqlite"), "median"
    )
    assert_matches_pycytominer(as_profiles(table.reset_index()), reference)
    assert read_provenance(out, STAGE)["qc_exclusion"] == {
        "sites_excluded_by_qc": 5,
        "applied": True,
        "fields_excluded": 4,
        "sites_not_in_source": 1,
    }


def test_wells_without_cells_stay_flagged_and_cache_is_reused(s3_server, tmp_path, credentials):
    bucket = new_bucket(s3_server)
    plate = SyntheticPlate(n_cells=2000, features=4, wells=all_wells()[:6], empty_wells=("A03",))
    backend = write_synthetic_backend(tmp_path / "SYN00001.sqlite", plate)
    put(s3_server, bucket, backend, key("b1", "SYN00001", "sqlite"))
    out = run_stage(s3_server, bucket, tmp_path, "b1", "SYN00001", anonymous=False, threads=2)
    table = pd.read_parquet(out).set_index("Metadata_Well")
    assert list(table.index) == all_wells()[:6]
    assert table.loc["A03", "Metadata_Object_Count"] == 0 and table.loc["A03", "Metadata_Flag_NoCells"]
    assert table.drop(index="A03")["Metadata_Object_Count"].sum() == plate.n_cells
    cached = next((tmp_path / "cache").rglob("SYN00001.sqlite"))
    stamp = cached.stat().st_mtime_ns
    run_stage(s3_server, bucket, tmp_path, "b1", "SYN00001")
    assert cached.stat().st_mtime_ns == stamp


def test_atomic_output_leaves_nothing_on_failure(s3_server, tmp_path, caplog):
    """A backend that is not a database fails the plate in one log line naming
    it; no wells.parquet appears."""
    bucket = new_bucket(s3_server)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"\0" * 8192)
    put(s3_server, bucket, junk, key("b1", "P2", "sqlite"))
    config = settings(s3_server, bucket, tmp_path)
    qc = write_qc_fields(tmp_path / "qc" / "fields.parquet", "P2", ())
    with caplog.at_level(logging.ERROR, logger="workflow_scripts.cellprofiler"):
        assert aggregate(config, tmp_path, "b1", "P2", qc) == 1
    assert any(r.getMessage().startswith("plate P2, s3://") and "P2.sqlite" in r.getMessage() for r in caplog.records)
    assert not (tmp_path / "cellprofiler").exists()


@pytest.mark.parametrize("damage", ["truncated", "deleted"])
def test_changed_cache_copy_is_fetched_again(s3_server, tmp_path, damage):
    """A cached copy that no longer matches the bucket is downloaded again, and the wells are the same."""
    bucket = new_bucket(s3_server)
    plate = SyntheticPlate(n_cells=200, features=3, wells=all_wells()[:2], empty_wells=())
    put(s3_server, bucket, write_synthetic_backend(tmp_path / "b.sqlite", plate), key("b1", plate.plate, "sqlite"))
    first = pd.read_parquet(run_stage(s3_server, bucket, tmp_path, "b1", plate.plate))
    cached = Path(pd.read_parquet(manifest_path(tmp_path))["path"].iloc[0])
    original = cached.read_bytes()
    if damage == "deleted":
        cached.unlink()
    else:
        cached.write_bytes(original[:1000])
    second = pd.read_parquet(run_stage(s3_server, bucket, tmp_path, "b1", plate.plate))
    assert cached.read_bytes() == original
    pd.testing.assert_frame_equal(second, first)
