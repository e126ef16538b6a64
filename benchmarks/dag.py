"""How long Snakemake takes to plan a run of many plates: a dry-run of every stage.

Plans the whole workflow (both feature sets, DINO included) for the first N
plates of a plate table, on local storage and, with ``--s3``, with S3 as
Snakemake's default storage (the AWS Batch profile's setup) against a local
S3 server, and prints plates, jobs, seconds and milliseconds per job. The
plate table defaults to JUMP's (``../shared/fixtures/jump-metadata``); with
``--generate`` the same number of rows is made up instead.

    .venv/bin/python benchmarks/dag.py --plates 500,2525 --s3 500
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
JUMP_PLATES = REPO.parent / "shared" / "fixtures" / "jump-metadata" / "metadata" / "plate.csv.gz"
COLUMNS = ["Metadata_Source", "Metadata_Batch", "Metadata_Plate", "Metadata_PlateType"]


def plate_table(path: Path | None, rows: int) -> pd.DataFrame:
    """The first ``rows`` plates of ``path``, or ``rows`` made-up plates in 50-plate batches."""
    if path is None:
        return pd.DataFrame(
            {
                "Metadata_Source": [f"source_{i % 13 + 1}" for i in range(rows)],
                "Metadata_Batch": [f"batch_{i // 50:03d}" for i in range(rows)],
                "Metadata_Plate": [f"PLATE{i:05d}" for i in range(rows)],
                "Metadata_PlateType": "COMPOUND",
            }
        )
    if not path.is_file():
        raise SystemExit(f"plate table not found: {path} (give --plate-table, or --generate)")
    table = pd.read_csv(path, dtype=str)[COLUMNS]
    if len(table) < rows:
        raise SystemExit(f"{path} has {len(table)} plates, fewer than {rows}")
    return table.head(rows)


def dry_run(folder: Path, plates: pd.DataFrame, storage: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds and jobs of ``snakemake -n`` for ``plates``, every stage and both feature sets.

    CPU seconds say what the wall time would be on an idle machine, where
    other work shares the cores.
    """
    plates.to_csv(folder / "plates.csv", index=False)
    config = {
        "results_dir": "results",
        "plates": str(folder / "plates.csv"),
        "dataset": "cpg0016-jump",
        "select": {"sources": [], "plate_types": []},
        "features": ["cellprofiler", "dino"],
        "embedding": {"allow_random_weights": True},
    }
    (folder / "scale.yaml").write_text(yaml.safe_dump(config))
    command = [
        sys.executable, "-m", "snakemake", "-n", "--snakefile", str(REPO / "Snakefile"),
        "--configfile", str(REPO / "config" / "config.yaml"), str(folder / "scale.yaml"),
        "--directory", str(folder), *storage,
    ]  # fmt: skip
    started, cpu = time.perf_counter(), _children_cpu()
    result = subprocess.run(command, check=False, capture_output=True, text=True, env=env)
    seconds, cpu = time.perf_counter() - started, _children_cpu() - cpu
    if result.returncode != 0:
        raise SystemExit(f"dry-run failed:\n{result.stderr[-3000:]}")
    total = re.search(r"^total\s+(\d+)$", result.stdout + result.stderr, re.MULTILINE)
    return seconds, cpu, int(total.group(1)) if total else 0


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def s3_storage(endpoint: str) -> tuple[list[str], dict[str, str]]:
    """Snakemake options and environment for S3 default storage on the local server."""
    keys = {"AWS_ACCESS_KEY_ID": "benchmark", "AWS_SECRET_ACCESS_KEY": "benchmark"}
    options = [
        "--default-storage-provider", "s3", "--default-storage-prefix", "s3://results/run",
        "--storage-s3-endpoint-url", endpoint,
        "--storage-s3-access-key", keys["AWS_ACCESS_KEY_ID"], "--storage-s3-secret-key", keys["AWS_SECRET_ACCESS_KEY"],
    ]  # fmt: skip
    return options, keys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plates", default="500,2525", help="plate counts planned on local storage")
    parser.add_argument("--s3", default="", help="plate counts planned with S3 default storage")
    parser.add_argument("--plate-table", type=Path, default=JUMP_PLATES)
    parser.add_argument("--generate", action="store_true", help="made-up plates instead of a plate table")
    args = parser.parse_args()
    local = [int(n) for n in args.plates.split(",") if n]
    remote = [int(n) for n in args.s3.split(",") if n]
    source = None if args.generate else args.plate_table
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    rows = []
    for n in local:
        with tempfile.TemporaryDirectory() as folder:
            seconds, cpu, jobs = dry_run(Path(folder), plate_table(source, n), [], env)
        rows.append(("local", n, jobs, seconds, cpu))
    if remote:
        sys.path.insert(0, str(REPO))
        from workflow_scripts.demo.s3server import S3Server

        with S3Server() as server:
            server.admin_client().create_bucket(Bucket="results")
            options, keys = s3_storage(server.endpoint_url)
            for n in remote:
                with tempfile.TemporaryDirectory() as folder:
                    seconds, cpu, jobs = dry_run(Path(folder), plate_table(source, n), options, {**env, **keys})
                rows.append(("s3", n, jobs, seconds, cpu))
    print(f"{'storage':8} {'plates':>7} {'jobs':>7} {'wall s':>7} {'CPU s':>7} {'ms/job':>7}")
    for storage, n, jobs, seconds, cpu in rows:
        print(f"{storage:8} {n:7d} {jobs:7d} {seconds:7.1f} {cpu:7.1f} {1000 * seconds / max(jobs, 1):7.2f}")


if __name__ == "__main__":
    main()
