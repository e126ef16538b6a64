"""Where a plate's time goes besides the work: starting each job's Python and importing its stage.

Every per-plate job is one ``python -m workflow_scripts.<stage>`` process, so
each pays an interpreter start and its stage's imports (pandas, zarr, torch…)
before any pixel is read. This prints, per stage, that start-up cost (best of
``--repeats`` fresh processes), and, from a finished run's ``benchmark:``
files, each per-plate rule's mean wall time per job, so the share of start-up
in a plate's wall time can be read off.

    .venv/bin/python benchmarks/overhead.py --results results/demo
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
# Per-plate rules and the stage module each one runs.
PER_PLATE = {
    "fetch": "fetch",
    "omezarr": "omezarr",
    "qc": "qc",
    "dino": "dino",
    "cellprofiler": "cellprofiler",
    "profiles": "profiles",
}


def startup_seconds(module: str, repeats: int) -> float:
    """Best wall time of a fresh interpreter importing the stage's entry module."""
    command = [sys.executable, "-c", f"import workflow_scripts.{module}.__main__"]
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(command, check=True, cwd=REPO)
        best = min(best, time.perf_counter() - started)
    return best


def job_seconds(results: Path, rule: str) -> tuple[int, float]:
    """Jobs and mean wall seconds of ``rule`` in a finished run's benchmark files."""
    files = sorted((results / "benchmarks" / rule).rglob("*.tsv"))
    if not files:
        return 0, float("nan")
    seconds = [pd.read_csv(path, sep="\t")["s"].iloc[0] for path in files]
    return len(seconds), sum(seconds) / len(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=REPO / "results" / "demo", help="a finished run's results_dir")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"{'rule':13} {'start-up s':>10} {'jobs':>5} {'mean job s':>10} {'start-up share':>14}")
    total_startup = total_job = 0.0
    for rule, module in PER_PLATE.items():
        startup = startup_seconds(module, args.repeats)
        jobs, mean = job_seconds(args.results, rule)
        share = startup / mean if jobs else float("nan")
        print(f"{rule:13} {startup:10.2f} {jobs:5d} {mean:10.2f} {share:14.0%}")
        if jobs:
            total_startup, total_job = total_startup + startup, total_job + mean
    print(f"{'per plate':13} {total_startup:10.2f} {'':5} {total_job:10.2f} {total_startup / total_job:14.0%}")


if __name__ == "__main__":
    main()
