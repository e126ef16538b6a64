# Cell Painting profiling workflow: gallery plates to OME-Zarr, embeddings,
# CellProfiler profiles and batch-corrected KPIs. Stages live in rules/, the
# work in the workflow_scripts package.

from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "rules/common.smk"
include: "rules/fetch.smk"


rule all:
    input:
        all_targets(),
    default_target: True
