"""A whole demo plate fetched through an unreliable network, and bad LoadData."""

from __future__ import annotations

import pandas as pd
import pytest

from workflow_scripts.demo.build import BUCKET
from workflow_scripts.faultproxy import FaultProxy, Faults
from workflow_scripts.fetch import FetchSettings, fetch_plate
from workflow_scripts.gallery import PlateRef
from workflow_scripts.load_data import LoadDataError
from workflow_scripts.paths import cache_path
from workflow_scripts.s3 import parse_s3_url

CHANNELS = ["DNA", "AGP", "RNA", "ER", "Mito"]


def _settings(tmp_path, endpoint: str) -> FetchSettings:
    return FetchSettings(bucket=BUCKET, cache_dir=tmp_path / "cache", channels=CHANNELS, endpoint_url=endpoint,
                         concurrency=8, max_attempts=12)


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
