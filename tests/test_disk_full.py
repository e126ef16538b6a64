"""A disk that fills up during conversion, and during collection: a clear error, nothing half-written
counted as done, and a rerun with space that ends with the outputs of a normal run.

The plate's folder (where ``omezarr`` writes the OME-Zarr plate) and then
``collection/`` sit on small tmpfs mounts, each half the size of what its
job writes; logs stay on the ordinary disk, so the failing job can say what
happened. Space comes back by growing the tmpfs in place (``remount``),
which keeps whatever the failed run left there. Needs root (mount); skips
where mounting is not permitted.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.crash import can_mount, mount_tmpfs, output_digests, resize_tmpfs, unmount
from tests.support.workflow import job_counts, plate_dir, run_snakemake

pytestmark = pytest.mark.workflow

PAGE = 4096
ROOMY = 256 * 2**20
DISK_FULL = re.compile(r"no space left on device", re.IGNORECASE)


@dataclass
class Failure:
    """A job that ran out of space, what it left, and the rerun once there was space again."""

    target: str  # relative to the results
    log: str  # the failed job's log
    left: list[str]  # files on the small filesystem after the failure, relative to it
    pending: subprocess.CompletedProcess  # a dry run after the failure
    rerun: subprocess.CompletedProcess


@dataclass
class DiskFull:
    plate: str
    reference: Path
    results: Path
    conversion: Failure
    collection: Failure


def half_size(path: Path) -> int:
    """Half the bytes of ``path`` (a file or a tree), in whole pages."""
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return max(PAGE, sum(f.stat().st_size for f in files) // 2 // PAGE * PAGE)


def files_under(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def disk_full(demo_gallery, s3_server, tmp_path_factory):
    reason = can_mount()
    if reason:
        pytest.skip(reason)
    layout, root = demo_gallery
    plate = layout.plates[0]
    config = {"select": {"plates": [plate.plate]}, "sample": {"sites": [1]}, "features": ["cellprofiler"]}
    base = tmp_path_factory.mktemp("diskfull")
    results, reference = base / "results", base / "reference"
    folder = plate_dir(results, layout.dataset, plate.source, plate.batch, plate.plate)
    plate_id = f"{layout.dataset}/{plate.source}/{plate.batch}/{plate.plate}"
    zarr = (folder / f"{plate.plate}.ome.zarr").relative_to(results).as_posix()
    collected = "collection/cellprofiler/profiles.parquet"

    def snakemake(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        return run_snakemake(results, root / "plates.csv", s3_server.endpoint_url, *args, config=config, check=check)

    snakemake(str(results / collected))  # the normal run, moved aside: the collection records its own paths
    results.rename(reference)
    mounted: list[Path] = []

    def fill(mount: Path, target: str, log: str) -> Failure:
        """Run ``target`` with ``mount`` half as large as the target; then with room, and run it again."""
        mount_tmpfs(mount, half_size(reference / target))
        mounted.append(mount)
        failed = snakemake(str(results / target), check=False)
        assert failed.returncode != 0, f"{target} was written on a filesystem half its size"
        left, pending = files_under(mount), snakemake("--dry-run", str(results / target))
        failed_log = (results / "logs" / log).read_text()
        (base / f"failed-{Path(log).parts[0]}.log").write_text(failed_log)  # the rerun overwrites the job's log
        resize_tmpfs(mount, ROOMY)
        return Failure(target, failed_log, left, pending, snakemake(str(results / target)))

    try:
        conversion = fill(folder, zarr, f"omezarr/{plate_id}.log")
        collection = fill(results / "collection", collected, "collection/cellprofiler/collect.log")
        yield DiskFull(plate.plate, reference, results, conversion, collection)
    finally:
        for mount in reversed(mounted):
            unmount(mount)


def _error_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if DISK_FULL.search(line)]


def test_conversion_out_of_space_names_the_plate(disk_full):
    lines = _error_lines(disk_full.conversion.log)
    assert any(disk_full.plate in line and " ERROR " in line for line in lines), disk_full.conversion.log[-3000:]


def test_collection_out_of_space_names_the_file_in_one_line(disk_full):
    log = disk_full.collection.log
    path = str(disk_full.results / disk_full.collection.target)
    assert any(path in line and " ERROR " in line for line in _error_lines(log)), log
    assert "Traceback" not in log


def test_nothing_half_written_is_counted_as_done(disk_full):
    """The failed job's output is gone (only the converter's resumable temporary plate stays), and Snakemake
    still has the job to do."""
    conversion, collection = disk_full.conversion, disk_full.collection
    zarr_name = Path(conversion.target).name
    assert not [f for f in conversion.left if f.startswith(zarr_name + "/")]
    assert any(f.startswith(zarr_name + ".incomplete/") for f in conversion.left)
    assert collection.left == []
    assert job_counts(conversion.pending) == {"omezarr": 1}
    assert job_counts(collection.pending) == {"collect": 1}


def test_reruns_with_space_finish_the_job_and_match_a_normal_run(disk_full):
    assert job_counts(disk_full.conversion.rerun) == {"omezarr": 1}
    assert job_counts(disk_full.collection.rerun) == {"collect": 1}
    assert output_digests(disk_full.results) == output_digests(disk_full.reference)
