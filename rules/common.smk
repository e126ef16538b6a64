# Config validation, the plate table, path helpers and wildcard constraints.
# Every other rule file builds its paths from the names defined here, and
# hands its stage the config sections it needs through `stage_settings` and
# its paths through `stage_io` (see workflow_scripts/stage.py).

import inspect
import json
import os
import re
import shlex
import sys

from snakemake.common import overwrite_function_params
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

# Jobs run the workflow_scripts package of this checkout, locally and on
# cluster nodes alike (where the sources are deployed with the job).
sys.path.insert(0, workflow.basedir)
shell.prefix(f"export PYTHONPATH={shlex.quote(workflow.basedir)}; ")

from workflow_scripts import paths, run_lock
from workflow_scripts.plates import read_plate_table
from workflow_scripts.settings import SettingsError, complete, resolve_cache_dir

try:  # one line naming the key, before Snakemake's own validation prints the whole schema
    complete(config)
except SettingsError as error:
    raise WorkflowError(str(error)) from None
validate(config, workflow.source_path("../config/config.schema.yaml"))


def check_profile_variable(option, value):
    """A profile value still reading `$NAME` means that variable is unset: say which to set."""
    unset = sorted(set(re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", value or "")))
    if unset:
        raise WorkflowError(
            f"{option} is {value!r}: set the environment variable(s) {', '.join(unset)} "
            "(the profile takes them from the environment; see its config.yaml)"
        )


def check_remote_jobs():
    """Before the first job goes to a cluster or cloud: its image is named, and no credential travels with it.

    Snakemake copies every storage setting that is set into each remote job (on
    AWS Batch in clear into the job definition's environment, which whoever may
    describe jobs reads), so credentials come from the standard AWS chain here
    and from the job role there. The executor is known only once the run
    starts, so the Snakefile's `onstart` calls this.
    """
    if not workflow.non_local_exec:
        return
    check_profile_variable("--container-image", workflow.remote_execution_settings.container_image)
    given = sorted(
        f"--storage-{plugin}-{name.replace('_', '-')}"
        for plugin, tagged in workflow.storage_provider_settings.items()
        for name in ("access_key", "secret_key", "token")
        if any(getattr(settings, name, None) is not None for settings in tagged)
    )
    if given:
        raise WorkflowError(
            f"{', '.join(given)} (or its SNAKEMAKE_STORAGE_* variable) would be copied in clear into every job: "
            "unset it; give your own credentials the standard AWS way (AWS_PROFILE, AWS_ACCESS_KEY_ID, ...), "
            "jobs get theirs from the job role"
        )


check_profile_variable(
    "--default-storage-prefix", workflow.storage_settings.default_storage_prefix if workflow.storage_settings else None
)

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
    """The job's named inputs and outputs, and its plate, as stage options.

    Inputs named `plates_...` are every plate's files: declared so that
    Snakemake orders (and, from remote storage, stages) them, but not passed,
    since thousands of plates' paths would overflow a command line. The stage
    finds them from the plate table (`workflow_scripts.plates.selected_plate_files`).
    """
    options = []
    for flag, files in (("--input", input), ("--output", output)):
        for name, value in files.items():
            if flag == "--input" and name.startswith("plates_"):
                continue
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


def profiles_inputs(wildcards):
    """Each feature set's well profiles of the plate, and, for `wellpos` adjustment, of its batch.

    Only with `wellpos` does a plate's normalization depend on its batch's
    other plates.
    """
    folder = PLATE_DIR.format(**wildcards)
    inputs = {f"wells_{features}": f"{folder}/{features}/wells.parquet" for features in config["features"]}
    if "wellpos" in config["normalization"]["adjust"]:
        batch = PLATES[(PLATES["Metadata_Source"] == wildcards.source) & (PLATES["Metadata_Batch"] == wildcards.batch)]
        for features in config["features"]:
            inputs[f"batch_wells_{features}"] = plate_targets(f"{PLATE_DIR}/{features}/wells.parquet", batch)
    return inputs


# Snakemake inspects a function's signature at each call, i.e. for every job;
# the functions called for every plate's jobs hand it theirs once.
for per_job_function in (stage_io, require_checkpoint, profiles_inputs):
    overwrite_function_params(per_job_function, inspect.signature(per_job_function).parameters)


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


def all_targets():
    """What `snakemake` builds by default: every stage, per plate and across plates.

    Per-plate outputs are all upstream of these, so they are not listed:
    thousands of plates' targets would slow the DAG.
    """
    targets = []
    for features in config["features"]:
        targets += expand(f"{COLLECTION}/{features}/{{name}}", name=["selected_method.json", "drift.parquet"])
    targets.append(f"{RESULTS}/report/index.html")
    return targets


def report_inputs(wildcards):
    """Everything the report shows: each plate's QC and annotated profiles, each feature set's tables."""
    inputs = {
        "plates_qc": plate_targets(f"{PLATE_DIR}/qc/fields.parquet"),
        "plates_heatmaps": plate_targets(f"{PLATE_DIR}/qc/heatmaps"),
        "plates_illum": plate_targets(f"{PLATE_DIR}/qc/illum"),
    }
    for features in config["features"]:
        inputs[f"plates_annotated_{features}"] = plate_targets(f"{PLATE_DIR}/profiles/{features}_annotated.parquet")
        inputs[f"plates_profiles_{features}"] = plate_targets(f"{PLATE_DIR}/profiles/{features}.parquet")
        inputs[f"corrected_{features}"] = expand(
            f"{COLLECTION}/{features}/corrected/{{method}}.parquet", method=config["correction"]["methods"]
        )
        for name in ("kpis", "selected_method", "drift"):
            suffix = "json" if name == "selected_method" else "parquet"
            inputs[f"{name}_{features}"] = f"{COLLECTION}/{features}/{name}.{suffix}"
    if "dino" in config["features"]:
        inputs["plates_dino"] = plate_targets(f"{PLATE_DIR}/dino/wells.parquet")
    return inputs
