"""Crash and disk-full tests of the real workflow: kill a run mid-job, read what it did, compare outputs.

A run is killed the way a lost node or an out-of-memory kill ends it:
SIGKILL to Snakemake's whole process group (Snakemake and every job it
started), with no chance to clean up. What Snakemake itself printed says
which jobs it started and which it finished before the kill, so a rerun can
be checked for running a finished job again. Outputs are compared byte for
byte with an uninterrupted run made under the same results path (outputs
record their own paths in their provenance), leaving out what is expected
to vary between runs of the same inputs: ``VARYING``.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import pandas as pd

from tests.support import workflow

# Paths under results_dir whose bytes differ between two runs of the same inputs, and why:
VARYING = {
    "logs/": "job logs carry timestamps and timings",
    "benchmarks/": "each job's measured run time and memory",
    ".snakemake/": "Snakemake's own bookkeeping: run logs, metadata with start and end times, locks",
    "cache/": "download cache, not an output; its .fetched sidecars record each download",
    "test_overrides.yaml": "the tests' config overrides (endpoint port of the session's S3 server)",
}
# atomic_path's temporary files (".{name}.XXXXXXXX.tmp"), which a SIGKILL leaves behind; never read as outputs.
ATOMIC_TEMPORARY = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")

_JOB_START = re.compile(r"^(?:local)?rule (\w+):$")
_JOB_FIELD = re.compile(r"^\s+(output|jobid): (.*)$")
_JOB_FINISHED = re.compile(r"^Finished jobid: (\d+) \(Rule: \w+\)$")


@dataclass(frozen=True)
class Job:
    """A job as Snakemake names it across runs: its rule and its outputs (job ids change from run to run)."""

    rule: str
    outputs: tuple[str, ...]


@dataclass(frozen=True)
class Transcript:
    """What one Snakemake run printed, read for the jobs it started and finished."""

    text: str

    def _jobs(self) -> dict[str, Job]:
        jobs, rule, fields = {}, None, {}
        for line in self.text.splitlines():
            start, field = _JOB_START.match(line), _JOB_FIELD.match(line)
            if start:
                rule, fields = start.group(1), {}
            elif field and rule:
                fields[field.group(1)] = field.group(2)
                if "jobid" in fields:
                    jobs[fields["jobid"]] = Job(rule, tuple(fields.get("output", "").split(", ")))
                    rule = None
        return jobs

    @property
    def started(self) -> list[Job]:
        """Every job the run started, in order."""
        return list(self._jobs().values())

    @property
    def finished(self) -> list[Job]:
        """Every job Snakemake recorded as finished (its metadata written, no longer marked incomplete)."""
        jobs = self._jobs()
        return [jobs[m.group(1)] for m in map(_JOB_FINISHED.match, self.text.splitlines()) if m]

    def running(self, rule: str) -> list[Job]:
        """Jobs of ``rule`` started and not finished."""
        finished = set(self.finished)
        return [job for job in self.started if job.rule == rule and job not in finished]


@dataclass(frozen=True)
class Kill:
    """One run killed ``delay`` seconds after a job of ``rule`` started.

    ``interrupted``: the jobs of ``rule`` still running at the kill; ``killed``: false where the run
    had ended before (nothing was killed).
    """

    rule: str
    delay: float
    transcript: Transcript
    interrupted: tuple[Job, ...]
    killed: bool


def unlock(results: Path, plates: Path, endpoint_url: str, config: dict) -> None:
    """``snakemake --unlock``: a SIGKILLed run leaves its lock behind."""
    workflow.run_snakemake(results, plates, endpoint_url, "--unlock", config=config)


def run_and_kill(
    results: Path, plates: Path, endpoint_url: str, *targets: str, config: dict, rule: str, delay: float
) -> Kill:
    """Run Snakemake on ``targets``; ``delay`` seconds after a ``rule`` job starts, SIGKILL its process group.

    ``workflow.run_snakemake`` builds the command; only the launch differs
    (a session of its own, so one signal reaches every process of the run).
    """
    kill: dict = {}

    def launch(command, cwd=None, env=None, **_) -> subprocess.CompletedProcess:
        with tempfile.TemporaryDirectory() as folder:
            transcript = Path(folder) / "snakemake.out"
            with transcript.open("w") as output:
                process = subprocess.Popen(
                    command, cwd=cwd, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
                )
            if _wait_for_job(process, transcript, rule):
                time.sleep(delay)
            kill["killed"] = process.poll() is None
            kill["running"] = Transcript(transcript.read_text()).running(rule)
            if kill["killed"]:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            _wait_until_gone(process.pid)
            return subprocess.CompletedProcess(command, process.returncode, transcript.read_text(), "")

    environment = {"PYTHONUNBUFFERED": "1"}
    with mock.patch.object(workflow.subprocess, "run", launch):
        result = workflow.run_snakemake(
            results, plates, endpoint_url, *targets, config=config, check=False, env=environment
        )
    return Kill(rule, delay, Transcript(result.stdout), tuple(kill["running"]), kill["killed"])


def _wait_for_job(process: subprocess.Popen, transcript: Path, rule: str, timeout: float = 600) -> bool:
    """Wait until Snakemake starts a ``rule`` job; False if the run ends first."""
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        if Transcript(transcript.read_text()).running(rule):
            return True
        time.sleep(0.05)
    return False


def _wait_until_gone(group: int, timeout: float = 30) -> None:
    """Wait until no process of ``group`` is alive (zombies left to a parent that may never reap them aside)."""
    deadline = time.monotonic() + timeout
    while _alive(group) and time.monotonic() < deadline:
        time.sleep(0.05)


def _alive(group: int) -> bool:
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == group and fields[0] != "Z":
            return True
    return False


def output_digests(results: Path) -> dict[str, str]:
    """sha256 of every file under ``results`` that two runs of the same inputs must write identically."""
    digests = {}
    for path in sorted(p for p in results.rglob("*") if p.is_file()):
        relative = path.relative_to(results).as_posix()
        if relative.startswith(tuple(VARYING)) or ATOMIC_TEMPORARY.match(path.name):
            continue
        digests[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


def atomic_temporaries(results: Path) -> list[str]:
    """Temporary files of atomic writes that a kill left behind (outside ``VARYING``)."""
    found = (p.relative_to(results).as_posix() for p in results.rglob(".*.tmp") if ATOMIC_TEMPORARY.match(p.name))
    return sorted(path for path in found if not path.startswith(tuple(VARYING)))


def shortest_job_seconds(results: Path, rule: str) -> float:
    """The shortest run time of ``rule``'s jobs in a finished run, from Snakemake's benchmark files."""
    runs = [pd.read_csv(path, sep="\t")["s"].iloc[0] for path in (results / "benchmarks" / rule).rglob("*.tsv")]
    if not runs:
        raise AssertionError(f"no benchmark of rule {rule} under {results}")
    return float(min(runs))


def can_mount() -> str | None:
    """None where this process may mount a tmpfs; otherwise why not."""
    if shutil.which("mount") is None:
        return "no mount command on this machine"
    with tempfile.TemporaryDirectory() as folder:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", folder], check=False, capture_output=True
        )
        if mounted.returncode != 0:
            return f"cannot mount a tmpfs here ({mounted.stderr.decode().strip() or 'mount failed'})"
        subprocess.run(["umount", folder], check=True)
    return None


def mount_tmpfs(folder: Path, size: int) -> None:
    """Mount a tmpfs of ``size`` bytes at ``folder`` (created)."""
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], check=True)


def resize_tmpfs(folder: Path, size: int) -> None:
    """Grow (or shrink) the tmpfs at ``folder`` in place, keeping its files."""
    subprocess.run(["mount", "-o", f"remount,size={size}", str(folder)], check=True)


def unmount(folder: Path) -> None:
    """Unmount ``folder`` (lazily: a process still inside it cannot keep the mount alive)."""
    subprocess.run(["umount", "--lazy", str(folder)], check=True)
