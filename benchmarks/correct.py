"""The correct stage on synthetic collections: each method, the whole chain, and the bare library calls.

Per size (rows x features in batches of 1,000 rows, 4 plates of 250 wells
per batch, 10 % negative controls): synthetic per-plate profile tables
(float32, as the DINO stage writes them) are collected (pandas concat: the
collection package is not there yet) and feature-selected (drop NaN
columns), then corrected by every method through the stage's entry point,
each step in its own child process. Seconds are the child's wall and CPU
time (interpreter start, imports and parquet I/O included); peak memory is
the child's own maximum resident set (``os.wait4``). In the same run, a
child loads the selected matrix and times the bare library calls on the
arrays the stage's steps see: the ZCA solve (standardize on the controls,
SVD, whitening matrix, applied to every row), PCA + ``harmonypy.run_harmony``
(the stage's settings) of the profiles and of the whitened rows. The ratios
compare ``sphering``, ``harmony`` and ``sphering+harmony``, and the whole
chain (collect + select + correct ``sphering+harmony``), with the bare calls
they stand for. Prints Markdown tables. Run from the repository root::

    .venv/bin/python benchmarks/correct.py --sizes 20000,100000,1000000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the repository root, for tests.support

ROWS_PER_BATCH = 1_000
PLATES_PER_BATCH = 4
METHODS = ["none", "sphering", "harmony", "combat", "control_std", "sphering+harmony"]
CHAIN = "sphering+harmony"


@dataclass(frozen=True)
class Step:
    name: str
    seconds: float
    cpu_seconds: float
    peak_gb: float
    output: str


def run_child(step: str, folder: Path, *extra: str, label: str = "") -> Step:
    """Run one step in a child process; its wall time and its own peak resident set."""
    command = [sys.executable, __file__, "--child", step, "--folder", str(folder), *extra]
    started = time.perf_counter()
    with tempfile.TemporaryFile() as stdout:
        process = subprocess.Popen(command, stdout=stdout, cwd=ROOT)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        stdout.seek(0)
        output = stdout.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"step {step} {' '.join(extra)} failed:\n{output}")
    return Step(label or step, seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1e6, output)


def generate(folder: Path, rows: int, features: int) -> None:
    """Per-plate tables of the synthetic collection, float32 features."""
    from tests.support.correct_synthetic import Design, synthetic_profiles

    batches = rows // ROWS_PER_BATCH
    design = Design(
        batches=batches,
        plates_per_batch=PLATES_PER_BATCH,
        wells_per_plate=ROWS_PER_BATCH // PLATES_PER_BATCH,
        negcon_per_plate=ROWS_PER_BATCH // PLATES_PER_BATCH // 10,
        perturbations=100,
        features=features,
    )
    table = synthetic_profiles(design)
    feature_names = [name for name in table if not name.startswith("Metadata_")]
    table[feature_names] = table[feature_names].astype(np.float32)
    plates = folder / "plates"
    plates.mkdir(parents=True)
    for plate, rows_of_plate in table.groupby("Metadata_Plate", sort=False):
        rows_of_plate.to_parquet(plates / f"{plate}.parquet", index=False)


def collect(folder: Path) -> None:
    """All plates in one table (what workflow_scripts.collection will do)."""
    import pandas as pd

    tables = [pd.read_parquet(path) for path in sorted((folder / "plates").glob("*.parquet"))]
    pd.concat(tables, ignore_index=True).to_parquet(folder / "profiles.parquet", index=False)


def select(folder: Path) -> None:
    """Feature selection as the DINO default: drop columns with any NaN."""
    import pandas as pd

    table = pd.read_parquet(folder / "profiles.parquet")
    table.dropna(axis="columns").to_parquet(folder / "selected.parquet", index=False)


def correct(folder: Path, method: str, threads: int) -> None:
    """The stage's entry point, as the rule calls it."""
    from tests.support.correct_synthetic import stage_args
    from workflow_scripts.correct.__main__ import main

    args = stage_args(folder / "collection", folder / "selected.parquet", method)
    args[args.index("--threads") + 1] = str(threads)
    if main(args) != 0:
        raise SystemExit(1)


def bare(folder: Path, threads: int) -> None:
    """Time the library calls alone on the selected matrix; prints their wall and CPU seconds as JSON.

    The ZCA solve whitens every row; PCA + Harmony run on the profiles (the
    ``harmony`` method's arrays) and on the whitened rows (the chain's).
    """
    import harmonypy
    import pandas as pd
    import pyarrow.parquet as pq
    from sklearn.decomposition import PCA
    from threadpoolctl import threadpool_limits

    from tests.support.settings import section

    settings = section("correction")
    table = pq.read_table(folder / "selected.parquet")
    features = [name for name in table.column_names if not name.startswith("Metadata_")]
    values = np.column_stack([table.column(name).to_numpy() for name in features]).astype(np.float64)
    negcon = table.column("Metadata_PertType").to_numpy() == "negcon"
    batches = pd.DataFrame({"batch": table.column(settings["batch_key"]).to_numpy()})
    times: dict[str, tuple[float, float]] = {}

    def pca_harmony(rows: np.ndarray, label: str) -> None:
        with _timed(times, f"PCA of {label}"):
            components = PCA(settings["harmony"]["n_components"], svd_solver="covariance_eigh").fit_transform(rows)
        with _timed(times, f"harmonypy.run_harmony of {label}"):
            harmonypy.run_harmony(
                components,
                batches,
                "batch",
                max_iter_harmony=settings["harmony"]["max_iter"],
                random_state=settings["harmony"]["seed"],
                ncores=threads,
                verbose=False,
            )

    with threadpool_limits(threads):
        with _timed(times, "ZCA solve"):
            controls = values[negcon]
            mean, scale = controls.mean(axis=0), controls.std(axis=0)
            _, singular, vt = np.linalg.svd((controls - mean) / scale, full_matrices=False)
            whitening = (vt.T / (singular + settings["sphering"]["epsilon"])) @ vt * np.sqrt(len(controls) - 1)
            whitened = ((values - mean) / scale) @ whitening
        pca_harmony(values, "profiles")
        del values
        pca_harmony(whitened, "whitened")
    print(json.dumps(times))


@contextmanager
def _timed(times: dict[str, tuple[float, float]], name: str) -> Iterator[None]:
    """Record the block's wall and CPU seconds under ``name``."""
    wall, cpu = time.perf_counter(), time.process_time()
    yield
    times[name] = (time.perf_counter() - wall, time.process_time() - cpu)


def benchmark(rows: int, features: int, methods: list[str], threads: int, scratch: str | None) -> None:
    """Every step for one size, then the tables."""
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        folder = Path(tmp)
        made = run_child(
            "generate", folder, "--rows", str(rows), "--features", str(features), label="generate plates (not counted)"
        )
        steps = [run_child("collect", folder), run_child("select", folder)]
        steps += [
            run_child("correct", folder, "--method", method, "--threads", str(threads), label=f"correct {method}")
            for method in methods
        ]
        calls = run_child("bare", folder, "--threads", str(threads))
    bare_times = json.loads(calls.output.strip().splitlines()[-1])
    batches = rows // ROWS_PER_BATCH
    print(f"\n### {rows:,} × {features} in {batches:,} batches\n")
    print("| step | wall s | CPU s | peak RSS GB |\n|---|---:|---:|---:|")
    for step in [made, *steps]:
        print(f"| {step.name} | {step.seconds:.1f} | {step.cpu_seconds:.1f} | {step.peak_gb:.2f} |")
    for name, (seconds, cpu_seconds) in bare_times.items():
        print(f"| bare {name} | {seconds:.1f} | {cpu_seconds:.1f} | |")
    print(
        f"| bare calls' child in all (loading included) | {calls.seconds:.1f} | {calls.cpu_seconds:.1f} | {calls.peak_gb:.2f} |"
    )
    wall = {name: seconds for name, (seconds, _) in bare_times.items()}
    by_method = {
        "sphering": wall["ZCA solve"],
        "harmony": wall["PCA of profiles"] + wall["harmonypy.run_harmony of profiles"],
        CHAIN: wall["ZCA solve"] + wall["PCA of whitened"] + wall["harmonypy.run_harmony of whitened"],
    }
    print("\n| stage step | wall s | bare calls on the same arrays, wall s | ratio |\n|---|---:|---:|---:|")
    for method, seconds in by_method.items():
        if method in methods:
            step = steps[2 + methods.index(method)]
            print(f"| correct {method} | {step.seconds:.1f} | {seconds:.1f} | {step.seconds / seconds:.2f}x |")
    if CHAIN in methods:
        whole = steps[0].seconds + steps[1].seconds + steps[2 + methods.index(CHAIN)].seconds
        print(
            f"| collect + select + correct {CHAIN} | {whole:.1f} | {by_method[CHAIN]:.1f} | "
            f"{whole / by_method[CHAIN]:.2f}x |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="20000,100000", help="comma-separated row counts (multiples of 1000)")
    parser.add_argument("--features", type=int, default=384)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--threads", type=int, default=2, help="the stage's --threads, and the bare calls' threads")
    parser.add_argument("--scratch", default=None, help="folder for the temporary files (default: the system's)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--method", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "generate":
        generate(args.folder, args.rows, args.features)
    elif args.child == "collect":
        collect(args.folder)
    elif args.child == "select":
        select(args.folder)
    elif args.child == "correct":
        correct(args.folder, args.method, args.threads)
    elif args.child == "bare":
        bare(args.folder, args.threads)
    else:
        for rows in (int(size) for size in args.sizes.split(",")):
            benchmark(rows, args.features, args.methods.split(","), args.threads, args.scratch)


if __name__ == "__main__":
    main()
