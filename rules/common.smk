# Config validation, the plate table, path helpers and wildcard constraints.
# Every other rule file builds its paths from the names defined here, and
# hands its stage the config sections it needs through `stage_settings` and
# its paths through `stage_io` (see workflow_scripts/stage.py).

import json
import re
import shlex
import sys

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

# Jobs run the workflow_scripts package of this checkout, locally and on
# cluster nodes alike (where the sources are deployed with the job).
sys.path.insert(0, workflow.basedir)
shell.prefix(f"export PYTHONPATH={shlex.quote(workflow.basedir)}; ")

from workflow_scripts import paths
from workflow_scripts.plates import read_plate_table
from workflow_scripts.settings import resolve_cache_dir

validate(config, workflow.source_path("../config/config.schema.yaml"))


def check_profile_variables():
    """A profile value still reading `$NAME` means that variable is unset: say which to set."""
    prefix = workflow.storage_settings.default_storage_prefix if workflow.storage_settings else None
    unset = sorted(set(re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", prefix or "")))
    if unset:
        raise WorkflowError(
            f"--default-storage-prefix is {prefix!r}: set the environment variable(s) {', '.join(unset)} "
            "(the profile takes them from the environment; see its config.yaml)"
        )


check_profile_variables()

RESULTS = config["results_dir"]
resolve_cache_dir(config)
PLATES = read_plate_table(config["plates"], config["dataset"], config["select"])
PLATE_DIR = f"{RESULTS}/{paths.PLATE_DIR}"
PLATE_ID = "{dataset}/{source}/{batch}/{plate}"
COLLECTION = f"{RESULTS}/collection"
LOGS = f"{RESULTS}/logs"
BENCHMARKS = f"{RESULTS}/benchmarks"
CPU_ENV = "../envs/cpu.yaml"
GPU_ENV = "../envs/gpu.yaml"


wildcard_constraints:
    dataset="[^/]+",
    source="[^/]+",
    batch="[^/]+",
    plate="[^/]+",
    features="dino|cellprofiler",
    method="[a-z_]+(?:\\+[a-z_]+)*",


def plate_targets(pattern, plates=None):
    """``pattern`` (with the plate wildcards) expanded over ``plates`` (default: the selected plates)."""
    plates = PLATES if plates is None else plates
    return expand(
        pattern,
        zip,
        dataset=plates["Metadata_Dataset"],
        source=plates["Metadata_Source"],
        batch=plates["Metadata_Batch"],
        plate=plates["Metadata_Plate"],
    )


def stage_settings(*sections):
    """The config sections a stage reads, as one JSON string.

    A plain string, so Snakemake's params rerun trigger sees a changed setting.
    """
    return json.dumps({name: config[name] for name in sections}, sort_keys=True)


def stage_io(wildcards, input, output):
    """The job's named inputs and outputs, and its plate, as stage options."""
    options = []
    for flag, files in (("--input", input), ("--output", output)):
        for name, value in files.items():
            for path in [value] if isinstance(value, str) else value:
                options += [flag, f"{name}={path}"]
    plate_keys = {"dataset", "source", "batch", "plate"}
    if plate_keys <= set(wildcards.keys()):
        options += ["--plate", PLATE_ID.format(**wildcards)]
    for name in sorted(set(wildcards.keys()) - plate_keys):
        options += ["--wildcard", f"{name}={wildcards[name]}"]
    return shlex.join(options)


def require_checkpoint(wildcards):
    """No input: fails the DAG, before any job, when embeddings have no model.

    An input function, so the check fires only when a `dino` job is wanted.
    """
    embedding = config["embedding"]
    if not (embedding["checkpoint"] or embedding["allow_random_weights"]):
        raise WorkflowError(
            "config key embedding.checkpoint is not set: give a DINO checkpoint (path or s3:// URI), "
            "or set embedding.allow_random_weights: true, or leave 'dino' out of features"
        )
    return []


def batch_wells(wildcards):
    """Every plate of the batch's well profiles, which `wellpos` adjustment reads; none otherwise.

    Only then does a plate's normalization depend on its batch's other plates.
    """
    if "wellpos" not in config["normalization"]["adjust"]:
        return []
    batch = PLATES[(PLATES["Metadata_Source"] == wildcards.source) & (PLATES["Metadata_Batch"] == wildcards.batch)]
    return plate_targets(f"{PLATE_DIR}/{wildcards.features}/wells.parquet", batch)


def locked_model(wildcards):
    """The earlier run's files a locked job applies: its selected columns, and its model when correcting.

    Declared as inputs so Snakemake checks they exist; a method that cannot be
    applied without refitting (Harmony) fails here, before any job.
    """
    locked = config["correction"]["locked"]
    if not locked:
        return []
    folder = f"{locked}/{wildcards.features}"
    if "method" not in wildcards.keys():
        return [f"{folder}/selected.parquet"]
    from workflow_scripts.correct.chain import require_lockable
    from workflow_scripts.errors import InputError

    try:
        require_lockable(wildcards.method)
    except InputError as error:
        raise WorkflowError(str(error)) from None
    return [f"{folder}/models/{wildcards.method}.npz", f"{folder}/models/{wildcards.method}.json"]


QC_HEATMAPS = ["focus", "nuclei", "intensity", "saturation", "flagged"]


def all_targets():
    """What `snakemake` builds by default: every stage, per plate and across plates."""
    targets = plate_targets(f"{PLATE_DIR}/qc/fields.parquet")
    for features in config["features"]:
        targets += plate_targets(f"{PLATE_DIR}/{features}/wells.parquet")
        targets += expand(f"{COLLECTION}/{features}/{{name}}", name=["selected_method.json", "drift.parquet"])
    targets.append(f"{RESULTS}/report/index.html")
    return targets


def report_inputs(wildcards):
    """Everything the report shows; per-plate files in plate-table order."""
    inputs = {
        "qc": plate_targets(f"{PLATE_DIR}/qc/fields.parquet"),
        "heatmaps": plate_targets(expand(f"{PLATE_DIR}/qc/heatmap_{{metric}}.png", metric=QC_HEATMAPS, allow_missing=True)),
        "illum": plate_targets(f"{PLATE_DIR}/qc/illum"),
    }
    for features in config["features"]:
        inputs[f"annotated_{features}"] = plate_targets(f"{PLATE_DIR}/profiles/{features}_annotated.parquet")
        inputs[f"profiles_{features}"] = plate_targets(f"{PLATE_DIR}/profiles/{features}.parquet")
        inputs[f"corrected_{features}"] = expand(
            f"{COLLECTION}/{features}/corrected/{{method}}.parquet", method=config["correction"]["methods"]
        )
        for name in ("kpis", "selected_method", "drift"):
            suffix = "json" if name == "selected_method" else "parquet"
            inputs[f"{name}_{features}"] = f"{COLLECTION}/{features}/{name}.{suffix}"
    if "dino" in config["features"]:
        inputs["dino"] = plate_targets(f"{PLATE_DIR}/dino/wells.parquet")
    return inputs


PER_PLATE_INPUTS = ("qc", "heatmaps", "illum", "annotated_", "profiles_", "dino")


def report_io(wildcards, input, output):
    """The stage options without the per-plate inputs: the stage finds those from the plate table."""
    cross_plate = {name: files for name, files in input.items() if not name.startswith(PER_PLATE_INPUTS)}
    return stage_io(wildcards, cross_plate, output)
