# Config validation, the plate table, path helpers and wildcard constraints.
# Every other rule file builds its paths from the names defined here.

import shlex
import sys

from snakemake.utils import validate

# Jobs run the workflow_scripts package of this checkout, locally and on
# cluster nodes alike (where the sources are deployed with the job).
sys.path.insert(0, workflow.basedir)
shell.prefix(f"export PYTHONPATH={shlex.quote(workflow.basedir)}; ")

from workflow_scripts.plates import read_plate_table

validate(config, workflow.source_path("../config/config.schema.yaml"))

RESULTS = config["results_dir"]
CACHE = config["cache_dir"] or f"{RESULTS}/cache"
PLATES = read_plate_table(config["plates"], config["dataset"], config["select"])
PLATE_DIR = f"{RESULTS}/plates/{{dataset}}/{{source}}/{{batch}}/{{plate}}"
PLATE_ID = "{dataset}/{source}/{batch}/{plate}"
LOGS = f"{RESULTS}/logs"
BENCHMARKS = f"{RESULTS}/benchmarks"
CPU_ENV = "../envs/cpu.yaml"
GPU_ENV = "../envs/gpu.yaml"


wildcard_constraints:
    dataset="[^/]+",
    source="[^/]+",
    batch="[^/]+",
    plate="[^/]+",


def plate_targets(pattern):
    """``pattern`` (with the plate wildcards) expanded over the selected plates."""
    return expand(
        pattern,
        zip,
        dataset=PLATES["Metadata_Dataset"],
        source=PLATES["Metadata_Source"],
        batch=PLATES["Metadata_Batch"],
        plate=PLATES["Metadata_Plate"],
    )


def gallery_args():
    """CLI options shared by every rule that reads the gallery."""
    gallery = config["gallery"]
    args = ["--bucket", gallery["bucket"]]
    if gallery["endpoint_url"]:
        args += ["--endpoint-url", gallery["endpoint_url"]]
    if not gallery["anonymous"]:
        args.append("--signed")
    return " ".join(shlex.quote(a) for a in args)


def plate_args(wildcards):
    """The plate's identity as CLI options."""
    return " ".join(
        f"--{name} {shlex.quote(getattr(wildcards, name))}"
        for name in ("dataset", "source", "batch", "plate")
    )


def fetch_args(wildcards):
    """Options of `workflow_scripts.fetch` taken from the config."""
    sample, fetch = config["sample"], config["fetch"]
    args = [
        plate_args(wildcards),
        gallery_args(),
        f"--cache-dir {shlex.quote(CACHE)}",
        "--channels " + " ".join(config["channels"]),
        f"--concurrency {fetch['concurrency']} --max-attempts {fetch['max_attempts']}",
    ]
    if sample["wells"]:
        args.append("--wells " + " ".join(sample["wells"]))
    if sample["sites"]:
        args.append("--sites " + " ".join(str(s) for s in sample["sites"]))
    if not fetch["illum"]:
        args.append("--no-illum")
    if fetch["allow_missing"]:
        args.append("--allow-missing")
    return " ".join(args)


def all_targets():
    """What `snakemake` builds by default: every stage that exists, per plate."""
    return plate_targets(f"{PLATE_DIR}/load_data.parquet")
