"""CellProfiler stage against pycytominer ``SingleCells`` on one synthetic backend.

Builds a single-cell SQLite backend in the gallery's layout (cells spread
over a 384-well plate, FEATURES features per compartment), then, per
aggregation operation, runs each side in its own child process: this
stage (backend to wells.parquet) and ``SingleCells(...).aggregate_profiles()``
with its defaults. Seconds are the child's wall time (interpreter start and
imports included), peak memory is the child's own peak resident set (VmHWM),
and the numbers of the two are compared. A last child reads every feature
column of every cell once and does nothing else (``run_floor``): the floor
any reader of this backend through Python's sqlite3 pays, and the last
column gives every row's seconds over it. ``--repeats`` runs rounds of all
of these one after the other and keeps each one's fastest run. The backend
lives in a temporary folder and is deleted after. Prints a Markdown table.
Run from the repository root::

    .venv/bin/python benchmarks/cellprofiler.py --cells 1000000 --features 200
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for tests.support

from tests.support.cellprofiler_synthetic import SyntheticPlate, write_synthetic_backend
from workflow_scripts.cellprofiler.backend_schema import COMPARTMENTS, feature_columns, quote
from workflow_scripts.cellprofiler.output import STAGE, wells_table
from workflow_scripts.cellprofiler.sqlite_backend import VALUES_PER_FETCH, aggregate_sqlite
from workflow_scripts.provenance import write_table

FLOOR = "SQLite read floor"


def run_stage(backend: Path, operation: str, out: Path, workers: int = 1) -> None:
    profiles = aggregate_sqlite(backend, f"benchmark backend {backend}", operation, workers)
    write_table(wells_table(profiles, "benchmark", "benchmark", "SYN00001"), out, STAGE, {"operation": operation})


def run_pycytominer(backend: Path, operation: str, out: Path) -> None:
    from pycytominer.cyto_utils.cells import SingleCells

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        profiles = SingleCells(f"sqlite:///{backend}", aggregation_operation=operation).aggregate_profiles()
    profiles.to_parquet(out)


def run_floor(backend: Path) -> None:
    """Every feature column of every cell read once, and nothing else: per compartment one
    ``SELECT`` of its feature columns, fetched as the stage fetches (sqlite3, the same rows
    per call, the file opened read-only and immutable) into float64 matrices (NULL as NaN)."""
    con = sqlite3.connect(f"{backend.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
    for compartment in COMPARTMENTS:
        columns = [row[1] for row in con.execute(f"PRAGMA table_info({quote(compartment)})")]
        features = feature_columns(compartment, columns)
        cursor = con.execute(f"SELECT {', '.join(quote(f) for f in features)} FROM {quote(compartment)}")
        cells = 0
        while rows := cursor.fetchmany(max(16, VALUES_PER_FETCH // len(features))):
            cells += len(np.array(rows, dtype=np.float64))
        (expected,) = con.execute(f"SELECT count(*) FROM {quote(compartment)}").fetchone()
        if cells != expected:
            raise AssertionError(f"{compartment}: read {cells} of {expected} rows")
    con.close()


def run_side(side: str, backend: Path, operation: str, out: Path) -> None:
    """'stage', 'stage xN' (N worker processes), 'pycytominer' or the read floor."""
    if side == FLOOR:
        run_floor(backend)
    elif side == "pycytominer":
        run_pycytominer(backend, operation, out)
    else:
        run_stage(backend, operation, out, int(side.partition(" x")[2] or 1))


@dataclass
class Run:
    side: str
    operation: str
    seconds: float
    peak_gb: float
    out: Path


def peak_rss_gb() -> float:
    """This process's peak resident set since exec (VmHWM).

    Not getrusage's ru_maxrss: Linux carries the parent's peak over fork and
    exec into it, so every child would report at least the peak of this
    script, which builds the backend.
    """
    status = Path("/proc/self/status").read_text()
    kb = next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))
    return int(kb) / 2**20


def tree_rss_gb(process) -> float:
    """Resident memory of a process and all its descendants, summed."""
    total = 0
    for p in [process, *process.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / 2**30


def measure(side: str, backend: Path, operation: str, out: Path) -> Run:
    """One side in a fresh child process: wall time and peak memory.

    A single process reports its exact peak (VmHWM); with worker processes
    the peak is the largest sum over the process tree, sampled every 0.2 s.
    """
    started = time.perf_counter()
    argv = [sys.executable, __file__, "--child", side, str(backend), operation, str(out)]
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    process, sampled = psutil.Process(child.pid), 0.0
    while child.poll() is None:
        try:
            sampled = max(sampled, tree_rss_gb(process))
        except psutil.NoSuchProcess:
            break
        time.sleep(0.2)
    report = child.stdout.read()
    seconds = time.perf_counter() - started
    if child.wait() != 0:
        raise RuntimeError(f"{side} ({operation}) failed with exit code {child.returncode}")
    exact = json.loads(report.splitlines()[-1])["peak_gb"]
    return Run(side, operation, seconds, sampled if " x" in side else exact, out)


def max_abs_diff(stage: Path, reference: Path) -> float:
    """Over the wells pycytominer reports (it drops wells without cells).

    pandas is imported here, not at the top, so the stage's child process
    does not pay for it in its peak memory.
    """
    import pandas as pd

    ours = pd.read_parquet(stage).set_index("Metadata_Well")
    ref = pd.read_parquet(reference).set_index("Metadata_Well")
    features = [c for c in ref.columns if not c.startswith("Metadata_")]
    if [c for c in ours.columns if not c.startswith("Metadata_")] != features:
        raise AssertionError("feature columns differ")
    if not (ours.loc[ref.index, "Metadata_Object_Count"] == ref["Metadata_Object_Count"]).all():
        raise AssertionError("cell counts differ")
    a, b = ours.loc[ref.index, features].to_numpy(), ref[features].to_numpy(dtype=np.float64)
    if not np.array_equal(np.isnan(a), np.isnan(b)):
        raise AssertionError("missing values differ")
    return float(np.nanmax(np.abs(a - b)))


def best_runs(runs: list[Run]) -> list[Run]:
    """The fastest run of each (side, operation), in first-run order."""
    best: dict[tuple[str, str], Run] = {}
    for run in runs:
        key = (run.side, run.operation)
        if key not in best or run.seconds < best[key].seconds:
            best[key] = run
    return list(best.values())


def table(runs: list[Run], diffs: dict[tuple[str, str], float]) -> str:
    floor = next(r for r in runs if r.side == FLOOR)
    lines = [
        (
            "| operation | method | seconds | peak RSS GB | speed-up | memory ratio | max abs diff "
            "| seconds / read floor |"
        ),
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        ref = next((r for r in runs if r.side == "pycytominer" and r.operation == run.operation), None)
        compared = (
            f"{ref.seconds / run.seconds:.1f}x | {run.peak_gb / ref.peak_gb:.2f} | "
            f"{diffs.get((run.side, run.operation), 0.0):.2e}"
            if ref
            else " | | "
        )
        lines.append(
            f"| {run.operation} | {run.side} | {run.seconds:.1f} | {run.peak_gb:.3f} | {compared} | "
            f"{run.seconds / floor.seconds:.2f} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=200, help="per compartment")
    parser.add_argument("--sites", type=int, default=9)
    parser.add_argument("--operations", nargs="+", default=["median", "mean"])
    parser.add_argument("--workers", type=int, nargs="*", default=[], help="also run the stage with N processes")
    parser.add_argument("--repeats", type=int, default=1, help="interleaved rounds; the table keeps each best")
    parser.add_argument("--workdir", type=Path, default=None, help="where the temporary backend goes")
    parser.add_argument("--child", nargs=4, metavar=("SIDE", "BACKEND", "OPERATION", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        side, backend, operation, out = args.child
        run_side(side, Path(backend), operation, Path(out))
        print(json.dumps({"peak_gb": peak_rss_gb()}))
        return 0
    with tempfile.TemporaryDirectory(dir=args.workdir, prefix="cellprofiler-benchmark-") as tmp:
        backend = Path(tmp) / "SYN00001.sqlite"
        started = time.perf_counter()
        write_synthetic_backend(backend, SyntheticPlate(n_cells=args.cells, features=args.features, sites=args.sites))
        print(
            f"backend: {args.cells} cells x {3 * args.features} features, 384 wells x {args.sites} sites, "
            f"{backend.stat().st_size / 2**30:.2f} GiB, built in {time.perf_counter() - started:.0f} s",
            flush=True,
        )
        sides = ["stage", *(f"stage x{n}" for n in args.workers), "pycytominer"]
        plan = [(side, operation) for operation in args.operations for side in sides] + [(FLOOR, "-")]
        runs = []
        for _ in range(args.repeats):
            for side, operation in plan:
                out = Path(tmp) / f"{side.replace(' ', '-')}-{operation}.parquet"
                runs.append(measure(side, backend, operation, out))
                print(json.dumps(runs[-1].__dict__, default=str), flush=True)
        diffs = {}
        for operation in args.operations:
            reference = Path(tmp) / f"pycytominer-{operation}.parquet"
            for side in sides[:-1]:
                diffs[(side, operation)] = max_abs_diff(
                    Path(tmp) / f"{side.replace(' ', '-')}-{operation}.parquet", reference
                )
        print(table(best_runs(runs), diffs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
