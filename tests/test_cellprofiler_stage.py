"""The stage end to end on SQLite backends served by a real S3 server:
download, aggregate, write wells.parquet, compared with pycytominer's
SingleCells on the same backend (real ones from ../shared/fixtures and a
generated one of 1e5 cells; median and mean; max abs difference <= 1e-9,
NaN where pycytominer has NaN, the same cell counts)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.test_cellprofiler_aggregate import (
    FIXTURES,
    assert_matches_pycytominer,
    pycytominer_profiles,
    with_collate_columns,
)
from workflow_scripts.cellprofiler.__main__ import main
from workflow_scripts.cellprofiler.aggregate import WellProfiles
from workflow_scripts.cellprofiler.output import read_provenance
from workflow_scripts.cellprofiler.sources import source_key
from workflow_scripts.cellprofiler.synthetic import (
    SyntheticPlate,
    all_wells,
    write_synthetic_backend,
)
from workflow_scripts.s3server import upload_tree

PREFIX = "cpg0016-jump/source_4"
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


def put(s3_server, bucket: str, path: Path, key: str) -> None:
    s3_server.admin_client().put_object(Bucket=bucket, Key=key, Body=path.read_bytes(), ACL="public-read")


def run_stage(s3_server, bucket: str, tmp_path: Path, batch: str, plate: str, *extra: str) -> Path:
    out = tmp_path / "cellprofiler" / "wells.parquet"
    argv = [
        "--bucket", bucket, "--endpoint-url", s3_server.endpoint_url, "--prefix", PREFIX,
        "--batch", batch, "--plate", plate, "--cache-dir", str(tmp_path / "cache"),
        "--out", str(out), "--metadata-source", "source_4", *extra,
    ]
    assert main(argv) == 0
    return out


def as_profiles(table: pd.DataFrame) -> WellProfiles:
    features = [c for c in table.columns if not c.startswith("Metadata_")]
    counts = table["Metadata_Object_Count"].to_numpy()
    return WellProfiles(list(table["Metadata_Well"]), counts, features, table[features].to_numpy(np.float64))


@pytest.mark.parametrize("operation", ["median", "mean"])
@pytest.mark.parametrize("fixture", sorted(FIXTURES))
def test_real_backends_through_s3_match_pycytominer(shared_fixtures, s3_server, tmp_path, fixture, operation):
    bucket = new_bucket(s3_server)
    backend = shared_fixtures / FIXTURES[fixture]
    put(s3_server, bucket, backend, source_key(PREFIX, "b1", "SQ00014613", "sqlite"))
    out = run_stage(s3_server, bucket, tmp_path, "b1", "SQ00014613", "--operation", operation)

    table = pd.read_parquet(out)
    assert list(table.columns[:6]) == [
        "Metadata_Source", "Metadata_Batch", "Metadata_Plate", "Metadata_Well",
        "Metadata_Object_Count", "Metadata_Flag_NoCells",
    ]
    assert (table["Metadata_Source"] == "source_4").all() and (table["Metadata_Plate"] == "SQ00014613").all()
    assert not table["Metadata_Flag_NoCells"].any()
    features = table.columns[6:]
    assert all(table[c].dtype == np.float64 for c in features)
    reference = pycytominer_profiles(with_collate_columns(backend, tmp_path / "ref.sqlite"), operation)
    assert_matches_pycytominer(as_profiles(table), reference)
    provenance = read_provenance(out)
    assert provenance["source"] == "sqlite" and provenance["operation"] == operation
    assert provenance["bytes"] == backend.stat().st_size
    assert provenance["url"].endswith("/workspace/backend/b1/SQ00014613/SQ00014613.sqlite")


@pytest.fixture(scope="module")
def synthetic_gallery(tmp_path_factory) -> tuple[Path, SyntheticPlate]:
    """A gallery tree holding one generated backend: 1e5 cells over 24 wells,
    one of them listed in the Image table but empty, 12 features per
    compartment. Few wells keep pycytominer, which queries well by well, fast."""
    plate = SyntheticPlate(n_cells=100_000, features=12, wells=all_wells()[:24], empty_wells=("A12",), sites=3)
    root = tmp_path_factory.mktemp("gallery")
    backend = root / source_key(PREFIX, "b1", plate.plate, "sqlite")
    backend.parent.mkdir(parents=True)
    write_synthetic_backend(backend, plate)
    return root, plate


@pytest.mark.parametrize("operation", ["median", "mean"])
def test_synthetic_backend_through_s3_matches_pycytominer(s3_server, synthetic_gallery, tmp_path, operation):
    root, plate = synthetic_gallery
    bucket = new_bucket(s3_server)
    upload_tree(s3_server.admin_client(), bucket, root)
    out = run_stage(s3_server, bucket, tmp_path, "b1", plate.plate, "--operation", operation)
    ours = as_profiles(pd.read_parquet(out))
    assert ours.object_counts.sum() == plate.n_cells
    assert_matches_pycytominer(ours, pycytominer_profiles(root / source_key(PREFIX, "b1", plate.plate, "sqlite"), operation))


def test_wells_without_cells_stay_flagged_and_cache_is_reused(s3_server, tmp_path, credentials):
    bucket = new_bucket(s3_server)
    plate = SyntheticPlate(n_cells=2000, features=4, wells=all_wells()[:6], empty_wells=("A03",))
    backend = write_synthetic_backend(tmp_path / "SYN00001.sqlite", plate)
    put(s3_server, bucket, backend, source_key(PREFIX, "b1", "SYN00001", "sqlite"))
    out = run_stage(s3_server, bucket, tmp_path, "b1", "SYN00001", "--signed", "--workers", "2")
    table = pd.read_parquet(out).set_index("Metadata_Well")
    assert list(table.index) == all_wells()[:6]
    assert table.loc["A03", "Metadata_Object_Count"] == 0 and table.loc["A03", "Metadata_Flag_NoCells"]
    assert table.drop(index="A03")["Metadata_Object_Count"].sum() == plate.n_cells
    cached = next((tmp_path / "cache").rglob("SYN00001.sqlite"))
    stamp = cached.stat().st_mtime_ns
    run_stage(s3_server, bucket, tmp_path, "b1", "SYN00001")
    assert cached.stat().st_mtime_ns == stamp


def test_atomic_output_leaves_nothing_on_failure(s3_server, tmp_path):
    """A backend that is not a database fails the plate; no wells.parquet appears."""
    bucket = new_bucket(s3_server)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"\0" * 8192)
    put(s3_server, bucket, junk, source_key(PREFIX, "b1", "P2", "sqlite"))
    with pytest.raises(ValueError, match=r"plate P2, s3://.*P2\.sqlite"):
        run_stage(s3_server, bucket, tmp_path, "b1", "P2")
    assert not (tmp_path / "cellprofiler").exists()
