"""The fetch stage end to end: real Snakemake, real S3 server, the demo gallery."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from tests.support.workflow import plate_dir, run_snakemake
from workflow_scripts.demo.build import BUCKET
from workflow_scripts.fetch.s3 import parse_s3_url
from workflow_scripts.paths import cache_path

pytestmark = pytest.mark.workflow
CHANNELS = ["DNA", "AGP", "RNA", "ER", "Mito"]
UNTIL_FETCH = ("--until", "fetch")


def _plates(layout):
    return [(layout.dataset, p.source, p.batch, p.plate, p) for p in layout.plates]


def _images(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.suffix in (".tif", ".tiff") and not p.name.startswith(".")]


def _source_file(root: Path, url: str) -> Path:
    location = parse_s3_url(url)
    assert location.bucket == BUCKET
    return root / "gallery" / location.key


@pytest.fixture(scope="module")
def fetched(demo_gallery, s3_server, tmp_path_factory):
    layout, root = demo_gallery
    results = tmp_path_factory.mktemp("results")
    run_snakemake(results, root / "plates.csv", s3_server.endpoint_url, *UNTIL_FETCH)
    return layout, root, results


def test_fetch_is_byte_identical_to_the_gallery(fetched):
    layout, root, results = fetched
    for dataset, source, batch, plate, demo in _plates(layout):
        folder = plate_dir(results, dataset, source, batch, plate)
        sites = pd.read_parquet(folder / "load_data.parquet")
        assert len(sites) == len(layout.wells) * layout.sites
        assert sorted(sites["Metadata_Site"].unique()) == [str(demo.first_site + i) for i in range(layout.sites)]
        manifest = pd.read_parquet(folder / "fetch" / "manifest.parquet")
        urls = [u for c in sites.columns if c.startswith("URL_") for u in sites[c].unique()]
        assert len(manifest) == len(urls)
        for url in urls:
            location = parse_s3_url(url)
            local = cache_path(results / "cache", location.bucket, location.key)
            assert local.read_bytes() == _source_file(root, url).read_bytes(), url
        has_illum = any(c.startswith("URL_Illum") for c in sites.columns)
        assert has_illum == demo.illum


def test_rerun_has_nothing_to_do(fetched, s3_server):
    layout, root, results = fetched
    result = run_snakemake(results, root / "plates.csv", s3_server.endpoint_url, "--dry-run", *UNTIL_FETCH)
    assert re.search(r"^total\s+0$", result.stdout, re.MULTILINE), result.stdout


def test_sample_restricts_what_is_downloaded(demo_gallery, s3_server, tmp_path):
    layout, root = demo_gallery
    well = list(layout.wells)[1]
    phenix = layout.plates[0]
    run_snakemake(
        tmp_path, root / "plates.csv", s3_server.endpoint_url, *UNTIL_FETCH,
        config={"sample": {"wells": [well], "sites": [1]}},
    )
    sites = pd.read_parquet(plate_dir(tmp_path, layout.dataset, phenix.source, phenix.batch, phenix.plate) / "load_data.parquet")
    assert sites[["Metadata_Well", "Metadata_Site"]].values.tolist() == [[well, "1"]]
    images = _images(tmp_path / "cache")
    # the CV8000 plate numbers sites from 0, so site 1 is its second field: one site per plate
    assert len(images) == len(layout.plates) * len(CHANNELS)


def test_plan_counts_objects_and_bytes_without_downloading_images(demo_gallery, s3_server, tmp_path):
    layout, root = demo_gallery
    result = run_snakemake(tmp_path, root / "plates.csv", s3_server.endpoint_url, "plan")
    plan = pd.read_csv(tmp_path / "fetch_plan.tsv", sep="\t", dtype={"plate": str})
    for _, source, _, plate, demo in _plates(layout):
        row = plan[plan["plate"] == plate].iloc[0]
        files = [p for p in (root / "gallery").rglob("*") if plate in p.as_posix() and p.suffix in (".tif", ".tiff", ".npy")]
        assert row["objects"] == len(files)
        assert row["bytes"] == sum(p.stat().st_size for p in files)
    assert not _images(tmp_path / "cache")
    assert "total" in result.stdout


def test_missing_object_names_plate_and_key(demo_gallery, s3_server, tmp_path):
    layout, root = demo_gallery
    phenix = layout.plates[0]
    gone = next((root / "gallery").rglob("*Measurement1/Images/r01c01f01p01-ch5*"))
    key = gone.relative_to(root / "gallery").as_posix()
    admin = s3_server.admin_client()
    body = gone.read_bytes()
    admin.delete_object(Bucket=BUCKET, Key=key)
    try:
        result = run_snakemake(tmp_path, root / "plates.csv", s3_server.endpoint_url, *UNTIL_FETCH, check=False)
    finally:
        admin.put_object(Bucket=BUCKET, Key=key, Body=body, ACL="public-read")
    assert result.returncode != 0
    log = (tmp_path / "logs" / "fetch" / layout.dataset / phenix.source / phenix.batch / f"{phenix.plate}.log").read_text()
    assert phenix.plate in log and key in log
    assert not (plate_dir(tmp_path, layout.dataset, phenix.source, phenix.batch, phenix.plate) / "load_data.parquet").exists()


def test_adding_a_plate_runs_only_the_new_plate(demo_gallery, s3_server, tmp_path):
    layout, root = demo_gallery
    first, second = layout.plates[:2]
    run_snakemake(tmp_path, root / "plates.csv", s3_server.endpoint_url, *UNTIL_FETCH,
                  config={"select": {"plates": [first.plate]}})
    result = run_snakemake(tmp_path, root / "plates.csv", s3_server.endpoint_url, "--dry-run", *UNTIL_FETCH,
                           config={"select": {"plates": [first.plate, second.plate]}})
    planned = re.findall(r"wildcards: .*plate=(\S+)", result.stdout)
    assert planned == [second.plate]
