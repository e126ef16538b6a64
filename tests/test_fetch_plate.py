"""A whole demo plate fetched through an unreliable network, bad LoadData, and plans."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.support.faultproxy import FaultProxy, Faults
from workflow_scripts.demo.build import BUCKET
from workflow_scripts.errors import StageError
from workflow_scripts.fetch.backend import backend_key, planned_sources
from workflow_scripts.fetch.gallery import PlateRef
from workflow_scripts.fetch.load_data import LoadDataError
from workflow_scripts.fetch.plate import FetchSettings, fetch_plate, plan_plate, summarize_plans
from workflow_scripts.fetch.s3 import parse_s3_url
from workflow_scripts.paths import cache_path
from workflow_scripts.settings import complete

CHANNELS = ["DNA", "AGP", "RNA", "ER", "Mito"]


def _settings(tmp_path, endpoint: str) -> FetchSettings:
    config = {
        "cache_dir": str(tmp_path / "cache"),
        "channels": list(CHANNELS),
        "gallery": {"bucket": BUCKET, "endpoint_url": endpoint},
        "fetch": {"concurrency": 8, "max_attempts": 12},
    }
    return FetchSettings.from_config(complete(config))


def test_plate_is_byte_identical_through_faults(demo_gallery, s3_server, tmp_path):
    layout, root = demo_gallery
    demo = layout.plates[0]
    faults = Faults(slowdown=0.1, internal_error=0.1, reset=0.1, truncate=0.1, seed=7)
    plate = PlateRef(layout.dataset, demo.source, demo.batch, demo.plate)
    with FaultProxy(s3_server.endpoint_url, faults) as proxy:
        settings = _settings(tmp_path, proxy.endpoint_url)
        sites = fetch_plate(plate, settings, tmp_path / "load_data.parquet", tmp_path / "manifest.parquet")
        injected = sum(proxy.counts[kind] for kind in ("slowdown", "internal_error", "reset", "truncate"))
    assert injected > 0
    manifest = pd.read_parquet(tmp_path / "manifest.parquet")
    assert len(manifest) == len(sites) * len(CHANNELS) + len(CHANNELS)
    for url in manifest["bucket"] + "/" + manifest["key"]:
        location = parse_s3_url(f"s3://{url}")
        local = cache_path(settings.cache_dir, location.bucket, location.key)
        assert local.read_bytes() == (root / "gallery" / location.key).read_bytes()


def _upload_load_data(s3_server, plate: PlateRef, table: pd.DataFrame) -> str:
    key = plate.load_data_keys()[0]
    s3_server.admin_client().put_object(Bucket=BUCKET, Key=key, Body=table.to_csv(index=False).encode(), ACL="public-read")
    return key


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda t: t.drop(columns=["URL_OrigMito"]), "URL_OrigMito"),
        (lambda t: t.assign(Metadata_Well=["A01", "Q0x"] + list(t.Metadata_Well[2:])), "Metadata_Well, row 3: 'Q0x'"),
    ],
)
def test_malformed_load_data_names_plate_file_and_column(demo_gallery, s3_server, tmp_path, change, named):
    layout, root = demo_gallery
    demo = layout.plates[0]
    source = next((root / "gallery").rglob(f"{demo.plate}/load_data_with_illum.csv"))
    plate = PlateRef(layout.dataset, demo.source, demo.batch, "BROKEN1")
    table = pd.read_csv(source, dtype=str).assign(Metadata_Plate="BROKEN1")
    key = _upload_load_data(s3_server, plate, change(table))
    with pytest.raises(LoadDataError) as error:
        fetch_plate(plate, _settings(tmp_path, s3_server.endpoint_url), tmp_path / "ld.parquet", tmp_path / "m.parquet")
    assert "BROKEN1" in str(error.value) and key in str(error.value) and named in str(error.value)
    assert not (tmp_path / "ld.parquet").exists()


def test_plate_without_load_data_lists_the_keys_tried(s3_server, tmp_path):
    plate = PlateRef("cpg-demo", "source_1", "2025_01_13_Batch1", "NOLOADDATA")
    with pytest.raises(RuntimeError, match="plate NOLOADDATA: no LoadData .*load_data_with_illum.csv"):
        fetch_plate(plate, _settings(tmp_path, s3_server.endpoint_url), tmp_path / "a", tmp_path / "b")


def test_plan_counts_the_cellprofiler_output_without_downloading_it(demo_gallery, s3_server, tmp_path):
    """Only where CellProfiler features are wanted; the summary adds it to the totals."""
    layout, root = demo_gallery
    demo = layout.plates[0]
    plate = PlateRef(layout.dataset, demo.source, demo.batch, demo.plate)
    settings = _settings(tmp_path, s3_server.endpoint_url)
    backend = root / "gallery" / backend_key(plate, "sqlite")
    with_backend = plan_plate(plate, settings, tmp_path / "a.json", planned_sources(complete({})))
    assert with_backend["cellprofiler_source"] == "sqlite"
    assert (with_backend["cellprofiler_objects"], with_backend["cellprofiler_bytes"]) == (1, backend.stat().st_size)
    assert not list((tmp_path / "cache").rglob("*.sqlite"))
    images_only = plan_plate(plate, settings, tmp_path / "b.json", planned_sources(complete({"features": ["dino"]})))
    assert not any(name.startswith("cellprofiler") for name in images_only)
    assert images_only["bytes"] == with_backend["bytes"]

    table = summarize_plans([tmp_path / "a.json", tmp_path / "b.json"], tmp_path / "plan.tsv")
    total = table.iloc[-1]
    assert total["dataset"] == "total" and total["bytes"] == 2 * images_only["bytes"]
    assert total["cellprofiler_objects"] == 1 and total["cellprofiler_bytes"] == backend.stat().st_size
    assert total["GB"] == round((2 * images_only["bytes"] + backend.stat().st_size) / 1e9, 3)
    written = pd.read_csv(tmp_path / "plan.tsv", sep="\t")["cellprofiler_bytes"]
    assert written.iloc[0] == written.iloc[2] == backend.stat().st_size and pd.isna(written.iloc[1])


def test_plan_of_a_plate_without_cellprofiler_output_names_it(demo_gallery, s3_server, tmp_path):
    layout, _ = demo_gallery
    demo = layout.plates[0]
    plate = PlateRef(layout.dataset, demo.source, demo.batch, demo.plate)
    with pytest.raises(StageError, match=rf"plate {demo.plate}: no CellProfiler output found; tried .*profiles"):
        plan_plate(plate, _settings(tmp_path, s3_server.endpoint_url), tmp_path / "p.json", ["profiles"])
    assert not (tmp_path / "p.json").exists()
