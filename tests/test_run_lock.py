"""One run per results directory: Snakemake's lock within a working directory, the workflow's own across them."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.workflow import REPO, run_snakemake, snakemake_command, venv_environment
from workflow_scripts import run_lock
from workflow_scripts.run_lock import LOCK_FILE, RunLockError

HOLD = """
import sys, time
from workflow_scripts import run_lock
run_lock.acquire(sys.argv[1], sys.argv[2])
print("held", flush=True)
time.sleep(600)
"""


def hold_lock(results: Path, workdir: Path) -> subprocess.Popen:
    """Another process, as a run from ``workdir`` would, holding the lock until killed."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(results), str(workdir)], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "held"
    return holder


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait()


def test_a_live_run_holds_the_lock_and_release_frees_it(tmp_path):
    results = tmp_path / "results"
    holder = hold_lock(results, tmp_path / "elsewhere")
    try:
        with pytest.raises(RunLockError) as refused:
            run_lock.acquire(results, tmp_path)
        message = str(refused.value)
        assert f"pid {holder.pid}" in message and str(tmp_path / "elsewhere") in message
        assert str((results / LOCK_FILE).resolve()) in message
    finally:
        stop(holder)
    path = run_lock.acquire(results, tmp_path)
    assert json.loads(path.read_text())["pid"] == os.getpid()
    assert run_lock.acquire(results, tmp_path) == path  # the holder may take it again
    run_lock.release(results)
    assert not path.exists()


def test_a_dead_holder_on_this_host_is_taken_over_with_a_warning(tmp_path, caplog):
    results = tmp_path / "results"
    stop(hold_lock(results, tmp_path / "crashed"))
    run_lock.acquire(results, tmp_path)
    assert "no longer running" in caplog.text and str(tmp_path / "crashed") in caplog.text
    assert json.loads((results / LOCK_FILE).read_text())["workdir"] == str(tmp_path.resolve())


def test_a_reused_pid_is_not_mistaken_for_the_holder(tmp_path):
    """A live process with the holder's pid but another start time is not the holder."""
    results = tmp_path / "results"
    results.mkdir()
    parent = {
        "host": socket.gethostname(),
        "pid": os.getppid(),
        "process_start": "1",
        "workdir": "/old",
        "since": "then",
    }
    (results / LOCK_FILE).write_text(json.dumps(parent))
    run_lock.acquire(results, tmp_path)
    assert json.loads((results / LOCK_FILE).read_text())["pid"] == os.getpid()


def test_a_holder_on_another_host_is_refused_and_release_leaves_it(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    other = {"host": "node-17", "pid": 4242, "process_start": "99", "workdir": "/scratch/run", "since": "earlier"}
    (results / LOCK_FILE).write_text(json.dumps(other))
    with pytest.raises(RunLockError, match="host node-17 .*delete"):
        run_lock.acquire(results, tmp_path)
    run_lock.release(results)
    assert json.loads((results / LOCK_FILE).read_text()) == other


@pytest.mark.workflow
def test_a_second_working_directory_on_the_same_results_is_refused(demo_gallery, s3_server, tmp_path):
    layout, root = demo_gallery
    results = tmp_path / "results"
    plate = layout.plates[0]
    target = str(results / "plates" / layout.dataset / plate.source / plate.batch / plate.plate / "load_data.parquet")
    holder = hold_lock(results, tmp_path / "first")
    try:
        refused = run_snakemake(
            results, root / "plates.csv", s3_server.endpoint_url, target, workdir=tmp_path / "second", check=False
        )
    finally:
        stop(holder)
    assert refused.returncode != 0
    assert "is in use by a run" in refused.stderr and str(tmp_path / "first") in refused.stderr
    assert not Path(target).exists()
    done = run_snakemake(results, root / "plates.csv", s3_server.endpoint_url, target, workdir=tmp_path / "second")
    assert "no longer running" in done.stderr and Path(target).is_file()
    assert not (results / LOCK_FILE).exists()


@pytest.mark.workflow
def test_a_second_run_in_one_working_directory_is_refused_by_snakemake(demo_gallery, s3_server, tmp_path):
    layout, root = demo_gallery
    results = tmp_path / "results"
    plate = layout.plates[0]
    folder = results / "plates" / layout.dataset / plate.source / plate.batch / plate.plate
    first = subprocess.Popen(
        [*_command(results, root, s3_server), str(folder / "profiles" / "cellprofiler.parquet")],
        cwd=REPO,
        env=venv_environment(),
        stdout=(tmp_path / "first.log").open("w"),
        stderr=subprocess.STDOUT,
    )
    try:
        locks = results / ".snakemake" / "locks"
        deadline = time.monotonic() + 120
        while not (locks.is_dir() and any(locks.iterdir())) and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        second = run_snakemake(  # the same target, still being made
            results, root / "plates.csv", s3_server.endpoint_url, str(folder / "profiles" / "cellprofiler.parquet"),
            check=False,
        )  # fmt: skip
    finally:
        first.wait(timeout=600)
    said = second.stdout + second.stderr
    assert second.returncode != 0 and "Directory cannot be locked" in said, said[-3000:]
    assert first.returncode == 0, (tmp_path / "first.log").read_text()[-3000:]
    assert (folder / "profiles" / "cellprofiler.parquet").is_file()


def _command(results: Path, root: Path, s3_server) -> list[str]:
    """The command ``run_snakemake`` runs, for a run started in the background (it writes the overrides)."""
    run_snakemake(results, root / "plates.csv", s3_server.endpoint_url, "--dry-run")
    overrides = [REPO / "config" / "demo.yaml", results / "test_overrides.yaml"]
    return snakemake_command(overrides, results, "--cores", "2")
