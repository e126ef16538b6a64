"""The whole workflow against an S3 that misbehaves, and a gallery that lies.

One run of two plates goes through the report with a tenth of the S3
requests failing (503 SlowDown, 500, reset connections, bodies cut short,
responses that stall past the read timeout), on top of a fault forced on the
first request of each plate's LoadData, CellProfiler backend and platemap,
and of an extra annotation table, so that every stage that talks to S3
meets one (the DINO checkpoint, which the demo does not use, is fetched
through faults on its own). It runs with AWS credentials planted in the
environment. A fault-free run of the same configuration, made in the same
folder and moved aside, is the reference its outputs must match byte for
byte.

A second run, of three plates with ``--keep-going``, has one plate whose
LoadData names keys that would leave the cache, and one whose image never
comes; the third plate must be fetched all the same.
"""

from __future__ import annotations

import re
import secrets
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from tests.support.faultproxy import FAULT_KINDS, FaultProxy, Faults
from tests.support.workflow import plate_dir, run_snakemake
from workflow_scripts.demo.build import BUCKET, image_key, load_data_rows
from workflow_scripts.demo.design import DemoPlate
from workflow_scripts.demo.s3server import free_port
from workflow_scripts.dino.checkpoint import resolve_checkpoint
from workflow_scripts.fetch.s3 import parse_s3_url
from workflow_scripts.paths import cache_path

pytestmark = pytest.mark.workflow

READ_TIMEOUT = 5
EXTRA_TABLE = f"s3://{BUCKET}/faults-extra/wells.csv"
MAX_ATTEMPTS = 8
CONFIG = {
    "sample": {"sites": [1]},
    "features": ["cellprofiler"],
    "correction": {"methods": ["none"]},
    "fetch": {"max_attempts": MAX_ATTEMPTS, "read_timeout": READ_TIMEOUT},
    "evaluation": {"null_size": 100, "classifier_folds": 2},
    "annotation": {"extra_tables": [EXTRA_TABLE]},
}
# A tenth of the GET and HEAD requests fail, in every way S3 fails.
RANDOM_FAULTS = {"slowdown": 0.03, "internal_error": 0.02, "reset": 0.02, "truncate": 0.02, "slow": 0.01}
SURVIVED_KINDS = ("slowdown", "internal_error", "reset", "truncate", "slow")
RETRIES = re.compile(
    r" workflow_scripts\.fetch\.objects: (?P<what>.+): (?P<total>\d+) retries over (?P<objects>\d+) objects, "
    r"at most (?P<most>\d+) for one object \(max_attempts (?P<max>\d+)\)$"
)
PLANTED = {
    "AWS_ACCESS_KEY_ID": "AKIA" + secrets.token_hex(8).upper(),
    "AWS_SECRET_ACCESS_KEY": secrets.token_urlsafe(30),
    "AWS_SESSION_TOKEN": secrets.token_urlsafe(60),
}


def _forced_faults(plates) -> tuple[tuple[str, str], ...]:
    """A fault on the first request of each plate's LoadData, backend and platemap, and of the extra
    table, every kind in turn."""
    fragments = ["/faults-extra/wells.csv"]
    for plate in plates:
        fragments += [
            f"/load_data_csv/{plate.batch}/{plate.plate}/",
            f"/backend/{plate.batch}/{plate.plate}/",
            f"/platemaps/{plate.batch}/",
        ]
    return tuple((fragment, SURVIVED_KINDS[i % len(SURVIVED_KINDS)]) for i, fragment in enumerate(fragments))


def _targets(results: Path, layout, plates) -> list[str]:
    """Every plate's outputs that depend on S3: profiles (through CellProfiler and the platemap) and OME-Zarr."""
    targets = []
    for plate in plates:
        folder = plate_dir(results, layout.dataset, plate.source, plate.batch, plate.plate)
        targets += [str(folder / "profiles" / "cellprofiler.parquet"), str(folder / f"{plate.plate}.ome.zarr")]
    return targets


@dataclass(frozen=True)
class FaultRun:
    """The two runs of the same configuration, and what the faulty one was served."""

    plates: tuple[DemoPlate, ...]
    reference: Path  # the fault-free run
    run: Path  # the run through faults
    proxy: FaultProxy  # of the run through faults
    bucket: dict[str, Path]  # the local file of each key in the bucket


@pytest.fixture(scope="module")
def fault_run(demo_gallery, s3_server, tmp_path_factory) -> FaultRun:
    layout, root = demo_gallery
    plates = layout.plates[:2]
    config = {**CONFIG, "select": {"plates": [p.plate for p in plates]}}
    base = tmp_path_factory.mktemp("faults")
    run, reference = base / "run", base / "reference"
    extra, extra_key = base / "wells.csv", EXTRA_TABLE.removeprefix(f"s3://{BUCKET}/")
    pd.DataFrame({"Metadata_Well": list(layout.wells), "Metadata_Extra": "extra"}).to_csv(extra, index=False)
    s3_server.admin_client().put_object(Bucket=BUCKET, Key=extra_key, Body=extra.read_bytes(), ACL="public-read")
    port = free_port()  # both runs see the same endpoint, in case an output records it
    with FaultProxy(s3_server.endpoint_url, port=port) as proxy:
        run_snakemake(run, root / "plates.csv", proxy.endpoint_url, *_targets(run, layout, plates), config=config)
    run.rename(reference)  # same folder for both runs: outputs that record paths stay comparable
    faults = Faults(**RANDOM_FAULTS, slow_seconds=READ_TIMEOUT + 2, seed=4, first_hits=_forced_faults(plates))
    with FaultProxy(s3_server.endpoint_url, faults, port=port) as proxy:
        run_snakemake(run, root / "plates.csv", proxy.endpoint_url, config=config, env=PLANTED)
    bucket = {p.relative_to(root / "gallery").as_posix(): p for p in (root / "gallery").rglob("*") if p.is_file()}
    return FaultRun(tuple(plates), reference, run, proxy, {**bucket, extra_key: extra})


def _data_files(folder: Path) -> list[Path]:
    """Tables, JSON records, arrays and OME-Zarr files (metadata and chunks) under ``folder``, relative to it."""
    return sorted(
        p.relative_to(folder)
        for p in folder.rglob("*")
        if p.is_file()
        and not p.name.startswith(".snakemake")
        and (p.suffix in (".parquet", ".json", ".npy") or any(part.endswith(".ome.zarr") for part in p.parts))
    )


def test_every_stage_survives_the_faults_with_outputs_identical_to_a_fault_free_run(fault_run):
    proxy, run, reference = fault_run.proxy, fault_run.run, fault_run.reference
    assert all(proxy.counts[kind] > 0 for kind in SURVIVED_KINDS), proxy.counts
    assert (run / "report" / "index.html").is_file()
    compared = _data_files(reference / "plates")
    for plate in fault_run.plates:
        zarr_chunks = [p for p in compared if plate.plate in str(p) and "/c/" in p.as_posix()]
        assert zarr_chunks, f"no OME-Zarr chunk of {plate.plate} to compare"
    assert {p.name for p in compared} >= {"cellprofiler.parquet", "wells.parquet", "platemap.parquet", "zarr.json"}
    for relative in compared:
        assert (run / "plates" / relative).read_bytes() == (reference / "plates" / relative).read_bytes(), relative
    cached = [p for p in (run / "cache").rglob("*") if p.is_file() and not p.name.startswith(".")]
    assert len(cached) > 100 and EXTRA_TABLE.rsplit("/", 1)[1] in {p.name for p in cached}
    for path in cached:
        key = path.relative_to(run / "cache" / BUCKET).as_posix()
        assert path.read_bytes() == fault_run.bucket[key].read_bytes(), key


def _retry_lines(run: Path) -> list[dict[str, str]]:
    """Every retry summary the stages logged."""
    lines = []
    for log in (run / "logs").rglob("*.log"):
        for line in log.read_text().splitlines():
            found = RETRIES.search(line)
            if found:
                lines.append(found.groupdict())
    return lines


def test_retries_are_logged_per_plate_bounded_and_match_the_faults_injected(fault_run):
    proxy, lines = fault_run.proxy, _retry_lines(fault_run.run)
    injected = sum(proxy.counts[kind] for kind in FAULT_KINDS)
    assert sum(int(line["total"]) for line in lines) == injected, (lines, proxy.counts)
    assert all(int(line["max"]) == MAX_ATTEMPTS and int(line["most"]) < MAX_ATTEMPTS for line in lines), lines
    assert max(proxy.faults_by_path.values()) < MAX_ATTEMPTS
    per_plate = defaultdict(set)
    for line in lines:
        plate, _, part = line["what"].removeprefix("plate ").partition(" ")
        per_plate[plate].add(part)
    for plate in fault_run.plates:
        assert per_plate[plate.plate] == {"(LoadData, images, illumination)", "(CellProfiler output)", "(platemap)"}
        forced = sum(int(line["total"]) for line in lines if line["what"].startswith(f"plate {plate.plate} "))
        assert forced >= 3  # its LoadData, backend and platemap each met a fault
    assert sum(int(line["total"]) for line in lines if line["what"] == "annotation tables") >= 1


def test_planted_credentials_are_never_sent_nor_written(fault_run):
    proxy, run = fault_run.proxy, fault_run.run
    assert proxy.requests
    planted = [value.encode() for value in PLANTED.values()]
    for request in proxy.requests:
        names = {name.lower() for name, _ in request.headers}
        assert not names & {"authorization", "x-amz-security-token"}, request
        sent = (request.path + "".join(f"{n}: {v}" for n, v in request.headers)).encode()
        assert not any(value in sent for value in planted), request
    written = [p for p in run.rglob("*") if p.is_file()]
    assert any(".snakemake" in p.parts for p in written) and any("logs" in p.parts for p in written)
    for path in written:
        content = path.read_bytes()
        assert not any(value in content for value in planted), path


HOSTILE_BUCKET = "faults-hostile-gallery"


def _hostile_keys(outside: Path) -> list[str]:
    """Keys that would name files outside the cache, or not the file they seem to, once they are paths."""
    return [
        "../../../escape-dotdot.tif",
        f"{outside.as_posix()}/escape-absolute.tif",
        "images/%2e%2e%2F%2e%2e%2Fescape-encoded.tif",
        "images\\..\\..\\escape-backslash.tif",
        "images/./../escape-dot.tif",
    ]


def _hostile_load_data(layout, plate, keys: list[str]) -> pd.DataFrame:
    """The plate's LoadData with hostile keys in the first sampled sites, one through PathName_/FileName_."""
    table = pd.DataFrame(load_data_rows(layout, plate))
    sampled = table.index[table["Metadata_Site"] == "1"]
    for row, key in zip(sampled, keys[1:]):
        table.loc[row, "URL_OrigDNA"] = f"s3://{HOSTILE_BUCKET}/{key}"
    table["PathName_OrigRNA"] = table["URL_OrigRNA"].str.rsplit("/", n=1).str[0]
    table["FileName_OrigRNA"] = table["URL_OrigRNA"].str.rsplit("/", n=1).str[1]
    table.loc[sampled[0], ["PathName_OrigRNA", "FileName_OrigRNA"]] = [f"s3://{HOSTILE_BUCKET}/", keys[0]]
    return table.drop(columns=["URL_OrigRNA"])


@pytest.fixture(scope="module")
def failing_run(demo_gallery, s3_server, tmp_path_factory):
    """Three plates, ``--keep-going``: the first with hostile keys, the second with an image that never comes.

    LoadData comes from a bucket of its own, so the shared gallery is left as it is.
    """
    layout, root = demo_gallery
    hostile, broken, _ = layout.plates
    base = tmp_path_factory.mktemp("hostile")
    results, outside = base / "results", base / "outside"
    keys = _hostile_keys(outside)
    admin = s3_server.admin_client()
    admin.create_bucket(Bucket=HOSTILE_BUCKET, ACL="public-read")
    for key in keys:  # the objects exist: a fetch that followed the keys would write them
        admin.put_object(Bucket=HOSTILE_BUCKET, Key=key, Body=b"hostile", ACL="public-read")
    for plate in layout.plates:
        rows = (
            _hostile_load_data(layout, plate, keys) if plate is hostile else pd.DataFrame(load_data_rows(layout, plate))
        )
        key = f"{layout.dataset}/{plate.source}/workspace/load_data_csv/{plate.batch}/{plate.plate}/load_data.csv"
        admin.put_object(Bucket=HOSTILE_BUCKET, Key=key, Body=rows.to_csv(index=False).encode(), ACL="public-read")
    never = image_key(layout, broken, next(iter(layout.wells)), broken.first_site + 1, "DNA")
    targets = [str(_load_data(results, layout, plate)) for plate in layout.plates]
    with FaultProxy(s3_server.endpoint_url, Faults(broken=(never,))) as proxy:
        config = {
            "sample": {"sites": [1]},
            "fetch": {"max_attempts": 3},
            "gallery": {"bucket": HOSTILE_BUCKET, "endpoint_url": proxy.endpoint_url, "anonymous": True},
        }
        result = run_snakemake(
            results, root / "plates.csv", proxy.endpoint_url, "--keep-going", *targets, config=config, check=False
        )
    return layout, base, results, keys, never, proxy, result


def _fetch_log(results: Path, layout, plate) -> str:
    return (results / "logs" / "fetch" / layout.dataset / plate.source / plate.batch / f"{plate.plate}.log").read_text()


def _load_data(results: Path, layout, plate) -> Path:
    return plate_dir(results, layout.dataset, plate.source, plate.batch, plate.plate) / "load_data.parquet"


def test_hostile_keys_are_refused_naming_plate_and_key_and_nothing_is_written_outside(failing_run):
    layout, base, results, keys, _, _, result = failing_run
    hostile, _, fine = layout.plates
    assert result.returncode != 0
    log = _fetch_log(results, layout, hostile)
    assert f"plate {hostile.plate}: LoadData names {len(keys)} object(s) it cannot fetch" in log
    for key in keys:
        assert repr(key) in log, key
    assert not _load_data(results, layout, hostile).exists()
    assert list(base.rglob("*escape*")) == []
    assert not (base / "outside").exists()
    assert _load_data(results, layout, fine).is_file()


def test_an_object_that_never_comes_fails_its_plate_naming_the_key_after_bounded_attempts(failing_run):
    layout, _, results, _, never, proxy, _ = failing_run
    _, broken, fine = layout.plates
    log = _fetch_log(results, layout, broken)
    assert f"plate {broken.plate}: s3://{BUCKET}/{never}: failed after 3 attempts" in log
    assert re.search(rf"plate {broken.plate} \(.*\): 2 retries over 1 objects, at most 2 for one object", log), log
    assert [n for path, n in proxy.faults_by_path.items() if path.endswith(never.rsplit("/", 1)[1])] == [3]
    assert not _load_data(results, layout, broken).exists()
    fetched = pd.read_parquet(_load_data(results, layout, fine))
    assert len(fetched) == len(layout.wells)
    for url in fetched["URL_OrigDNA"]:
        location = parse_s3_url(url)
        assert cache_path(results / "cache", location.bucket, location.key).is_file()


def test_the_checkpoint_download_survives_faults(s3_server, tmp_path):
    """The DINO stage fetches an s3:// checkpoint through the same engine: a reset and a cut body are retried."""
    admin = s3_server.admin_client()
    admin.create_bucket(Bucket="faults-models", ACL="public-read")
    body = secrets.token_bytes(300_000)
    admin.put_object(Bucket="faults-models", Key="dino/vits.pth", Body=body, ACL="public-read")
    faults = Faults(first_hits=(("faults-models/", "reset"), ("vits.pth", "truncate")))
    with FaultProxy(s3_server.endpoint_url, faults) as proxy:
        path = resolve_checkpoint("s3://faults-models/dino/vits.pth", tmp_path, proxy.endpoint_url)
    assert path.read_bytes() == body
    assert (proxy.counts["reset"], proxy.counts["truncate"], proxy.counts["GET"]) == (1, 1, 3)
