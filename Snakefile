# Cell Painting profiling workflow: gallery plates to OME-Zarr, embeddings,
# CellProfiler profiles and batch-corrected KPIs. Stages live in rules/, the
# work in the workflow_scripts package. Run with --configfile (config/config.yaml
# for the public gallery, config/demo.yaml for the demo): there is no implicit
# default, so one config never leaks keys into another.

from snakemake.utils import min_version

min_version("9.0")


include: "rules/common.smk"
include: "rules/fetch.smk"
include: "rules/omezarr.smk"
include: "rules/qc.smk"
include: "rules/dino.smk"
include: "rules/cellprofiler.smk"
include: "rules/profiles.smk"
include: "rules/collection.smk"
include: "rules/correct.smk"
include: "rules/evaluate.smk"
include: "rules/report.smk"


rule all:
    input:
        all_targets(),
    default_target: True


# Before any job: remote jobs carry an image and no credential (common.smk),
# and one run at a time per results directory, also from another working
# directory (workflow_scripts/run_lock.py); Snakemake's own lock covers one.
onstart:
    check_remote_jobs()
    run_lock.acquire(RESULTS, os.getcwd())


onsuccess:
    run_lock.release(RESULTS)


onerror:
    run_lock.release(RESULTS)
