"""A plate's CellProfiler output found and fetched on a real S3 server: the
configured order with its fallbacks, per-site analysis CSVs found by listing,
every object downloaded through the fetch engine and listed in the manifest,
and the errors that name the plate, the file or the key."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tests.support.cellprofiler_synthetic import SyntheticPlate, all_wells, write_synthetic_backend
from tests.test_cellprofiler_stage import credentials, key, new_bucket, plate_ref, put, settings  # noqa: F401
from workflow_scripts.demo.s3server import upload_tree
from workflow_scripts.errors import InputError, StageError
from workflow_scripts.fetch.backend import MANIFEST_COLUMNS, fetch_backend, read_backend_manifest
from workflow_scripts.fetch.objects import sidecar_path
from workflow_scripts.fetch.plate import FetchSettings
from workflow_scripts.settings import complete

COLLATE = "cellprofiler/pycytominer-tests/tests/test_data/collate"
COLLATE_BATCH, COLLATE_PLATE = "2021_04_20_Target2", "BR00121431"
DEFAULT_SOURCES = complete({})["cellprofiler"]["sources"]


def fetch_settings(s3_server, bucket: str, tmp_path: Path, anonymous: bool = True) -> FetchSettings:
    return FetchSettings.from_config(complete(settings(s3_server, bucket, tmp_path, anonymous)))


def write_site_folders(root: Path, plate: str, wells: list[str]) -> Path:
    """Tiny per-site analysis folders (Image, Cells, Cytoplasm, Nuclei CSVs), two sites per well."""
    for well in wells:
        for site in (1, 2):
            folder = root / f"{plate}-{well}-{site}"
            folder.mkdir(parents=True)
            image = {"ImageNumber": [1], "Metadata_Plate": [plate], "Metadata_Well": [well], "Metadata_Site": [site]}
            pd.DataFrame(image).to_csv(folder / "Image.csv", index=False)
            for compartment in ("Cells", "Cytoplasm", "Nuclei"):
                cells = {"ImageNumber": [1, 1], "ObjectNumber": [1, 2], "AreaShape_Area": [100 + site, 200]}
                pd.DataFrame(cells).to_csv(folder / f"{compartment}.csv", index=False)
    return root


def test_manifest_lists_every_object_fetched_through_the_engine(s3_server, tmp_path):
    """Each object is verified against the size and ETag the listing found,
    recorded by the engine's sidecar, and listed with its local copy."""
    bucket = new_bucket(s3_server)
    plate = plate_ref("b1", "AN00001")
    sites = write_site_folders(tmp_path / "sites", plate.plate, ["A01", "B03"])
    upload_tree(s3_server.admin_client(), bucket, sites, key("b1", plate.plate, "analysis"))
    out = tmp_path / "fetch" / "cellprofiler.parquet"
    manifest = fetch_backend(plate, fetch_settings(s3_server, bucket, tmp_path), DEFAULT_SOURCES, out)

    assert pd.read_parquet(out).equals(manifest)
    assert tuple(manifest.columns) == MANIFEST_COLUMNS and len(manifest) == 4 * 4
    assert set(manifest["kind"]) == {"analysis"} and set(manifest["bucket"]) == {bucket}
    admin = s3_server.admin_client()
    for row in manifest.itertuples():
        head = admin.head_object(Bucket=bucket, Key=row.key)
        assert (row.size, row.etag) == (head["ContentLength"], head["ETag"].strip('"'))
        local = Path(row.path)
        assert local == tmp_path / "cache" / bucket / row.key
        assert local.read_bytes() == (sites / row.key.removeprefix(key("b1", plate.plate, "analysis"))).read_bytes()
        assert json.loads(sidecar_path(local).read_text())["etag"] == row.etag
    fetched = read_backend_manifest(out, plate)
    assert fetched.kind == "analysis" and len(fetched.paths) == 16
    assert str(fetched.location) == f"s3://{bucket}/{key('b1', plate.plate, 'analysis')}"
    assert fetched.size == manifest["size"].sum()


def test_configured_order_decides_and_missing_kinds_fall_back(s3_server, tmp_path):
    bucket = new_bucket(s3_server)
    plate = plate_ref("b1", "SYN00001")
    backend = write_synthetic_backend(tmp_path / "b.sqlite", SyntheticPlate(200, 3, wells=all_wells()[:2], empty_wells=()))
    put(s3_server, bucket, backend, key("b1", plate.plate, "sqlite"))
    put(s3_server, bucket, backend, key("b1", plate.plate, "profiles"))
    fetched = fetch_settings(s3_server, bucket, tmp_path)
    out = tmp_path / "cellprofiler.parquet"
    assert list(fetch_backend(plate, fetched, DEFAULT_SOURCES, out)["kind"]) == ["sqlite"]
    assert list(fetch_backend(plate, fetched, ["csv", "profiles", "sqlite"], out)["key"]) == [key("b1", plate.plate, "profiles")]


@pytest.mark.usefixtures("credentials")
def test_incomplete_site_folder_names_the_missing_key(shared_fixtures, s3_server, tmp_path):
    """Listed with signed requests; a site folder without Cells.csv is an error."""
    bucket = new_bucket(s3_server)
    analysis = shared_fixtures / COLLATE / "analysis" / COLLATE_BATCH / COLLATE_PLATE / "analysis"
    root = key(COLLATE_BATCH, COLLATE_PLATE, "analysis")
    upload_tree(s3_server.admin_client(), bucket, analysis, root)
    fetched = fetch_settings(s3_server, bucket, tmp_path, anonymous=False)
    with pytest.raises(StageError, match=rf"plate {COLLATE_PLATE}: .*s3://{bucket}/{root}{COLLATE_PLATE}-A01-2/Cells.csv"):
        fetch_backend(plate_ref(COLLATE_BATCH, COLLATE_PLATE), fetched, ["analysis"], tmp_path / "m.parquet")


def test_no_output_names_the_plate_and_every_key_tried(s3_server, tmp_path):
    bucket = new_bucket(s3_server)
    out = tmp_path / "fetch" / "cellprofiler.parquet"
    with pytest.raises(StageError) as error:
        fetch_backend(plate_ref("b1", "P1"), fetch_settings(s3_server, bucket, tmp_path), DEFAULT_SOURCES, out)
    message = str(error.value)
    assert message.startswith("plate P1: no CellProfiler output found")
    for kind in ("sqlite", "csv", "analysis"):
        assert f"s3://{bucket}/{key('b1', 'P1', kind)} ({kind})" in message
    assert not out.exists()


def test_manifest_of_another_plate_is_refused(s3_server, tmp_path):
    bucket = new_bucket(s3_server)
    plate = plate_ref("b1", "SYN00001")
    backend = write_synthetic_backend(tmp_path / "b.sqlite", SyntheticPlate(200, 3, wells=all_wells()[:2], empty_wells=()))
    put(s3_server, bucket, backend, key("b1", plate.plate, "sqlite"))
    out = tmp_path / "cellprofiler.parquet"
    fetch_backend(plate, fetch_settings(s3_server, bucket, tmp_path), DEFAULT_SOURCES, out)
    with pytest.raises(InputError, match=rf"{out}: .*SYN00001.sqlite is not part of plate OTHER's sqlite output"):
        read_backend_manifest(out, plate_ref("b1", "OTHER"))
