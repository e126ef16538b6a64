# Config validation, the plate table, path helpers and wildcard constraints.
# Every other rule file builds its paths from the names defined here.

import shlex
import sys

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

# Jobs run the workflow_scripts package of this checkout, locally and on
# cluster nodes alike (where the sources are deployed with the job).
sys.path.insert(0, workflow.basedir)
shell.prefix(f"export PYTHONPATH={shlex.quote(workflow.basedir)}; ")

from workflow_scripts.plates import read_plate_table

validate(config, workflow.source_path("../config/config.schema.yaml"))

if "dino" in config["features"] and not (
    config["embedding"]["checkpoint"] or config["embedding"]["allow_random_weights"]
):
    raise WorkflowError(
        "embedding.checkpoint is not set: give a DINO checkpoint (path or s3:// URI), "
        "or set embedding.allow_random_weights: true, or leave 'dino' out of features"
    )

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


def option(name, values):
    """``--name v1 v2 …`` with every value quoted for the shell."""
    return " ".join([f"--{name}", *(shlex.quote(str(v)) for v in values)])


def gallery_args(bucket=True):
    """CLI options shared by every rule that reads the gallery."""
    gallery = config["gallery"]
    args = ["--bucket", gallery["bucket"]] if bucket else []
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
        option("cache-dir", [CACHE]),
        option("channels", config["channels"]),
        f"--concurrency {fetch['concurrency']} --max-attempts {fetch['max_attempts']}",
    ]
    if sample["wells"]:
        args.append(option("wells", sample["wells"]))
    if sample["sites"]:
        args.append(option("sites", sample["sites"]))
    if not fetch["illum"]:
        args.append("--no-illum")
    if fetch["allow_missing"]:
        args.append("--allow-missing")
    return " ".join(args)


QC_HEATMAPS = ["focus", "nuclei", "intensity", "saturation", "flagged"]


def convert_args(wildcards):
    """Options of `workflow_scripts.omezarr` taken from the config."""
    convert = config["convert"]
    return " ".join(
        [
            option("cache-dir", [CACHE]),
            option("channels", config["channels"]),
            f"--ngff-version {convert['ngff_version']}",
            f"--pyramid-levels {convert['pyramid_levels']}",
            f"--compression-level {convert['compression_level']}",
            "--shard-per-field" if convert["shard_per_field"] else "--no-shard-per-field",
            "--apply-illumination" if convert["apply_illumination"] else "--no-apply-illumination",
        ]
    )


def qc_args(wildcards):
    """Options of `workflow_scripts.qc` taken from the config."""
    qc = config["qc"]
    names = ["focus_channel", "dna_channel", "focus_tolerance", "saturation_level"]
    names += ["max_saturated_fraction", "min_nucleus_area", "illum_filter_size"]
    args = [option(name.replace("_", "-"), [qc[name]]) for name in names]
    args.append("--exclude-flagged" if qc["exclude_flagged"] else "--no-exclude-flagged")
    return " ".join(args)


def embed_args(wildcards):
    """Options of `workflow_scripts.embed` taken from the config."""
    embedding = config["embedding"]
    args = [
        f"--source {shlex.quote(wildcards.source)} --batch {shlex.quote(wildcards.batch)}",
        f"--plate {shlex.quote(wildcards.plate)}",
        f"--arch {embedding['arch']}",
        option("channels", embedding["channels"]),
        f"--normalization {embedding['normalization']} --aggregation {embedding['aggregation']}",
        f"--batch-size {embedding['batch_size']} --workers {embedding['workers']}",
        f"--device {embedding['device']} --precision {embedding['precision']}",
        option("cache-dir", [CACHE]),
        gallery_args(bucket=False),
    ]
    for key in ("mean", "std"):
        if embedding[key]:
            args.append(option(key, embedding[key]))
    if embedding["checkpoint"]:
        args.append(f"--checkpoint {shlex.quote(embedding['checkpoint'])}")
    if embedding["allow_random_weights"]:
        args.append("--allow-random-weights")
    if config["qc"]["exclude_flagged"]:
        args.append("--exclude-flagged")
    return " ".join(args)


def cellprofiler_args(wildcards):
    """Options of `workflow_scripts.cellprofiler` taken from the config."""
    cellprofiler = config["cellprofiler"]
    return " ".join(
        [
            gallery_args(),
            option("prefix", [f"{wildcards.dataset}/{wildcards.source}"]),
            f"--batch {shlex.quote(wildcards.batch)} --plate {shlex.quote(wildcards.plate)}",
            f"--metadata-source {shlex.quote(wildcards.source)}",
            option("sources", cellprofiler["sources"]),
            f"--operation {cellprofiler['operation']}",
            option("cache-dir", [CACHE]),
        ]
    )


def all_targets():
    """What `snakemake` builds by default: every stage that exists, per plate."""
    targets = plate_targets(f"{PLATE_DIR}/qc/fields.parquet")
    if "dino" in config["features"]:
        targets += plate_targets(f"{PLATE_DIR}/dino/wells.parquet")
    if "cellprofiler" in config["features"]:
        targets += plate_targets(f"{PLATE_DIR}/cellprofiler/wells.parquet")
    return targets
