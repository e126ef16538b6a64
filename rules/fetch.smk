# Fetch: LoadData, images and illumination files of each plate from S3. The
# plate's CellProfiler output and platemap are fetched by the cellprofiler and
# profiles jobs that read them: fewer jobs per plate, a faster DAG at scale.


rule fetch:
    output:
        load_data=f"{PLATE_DIR}/load_data.parquet",
        manifest=f"{PLATE_DIR}/fetch/manifest.parquet",
    log:
        f"{LOGS}/fetch/{PLATE_ID}.log",
    benchmark:
        f"{BENCHMARKS}/fetch/{PLATE_ID}.tsv"
    params:
        settings=stage_settings("fetch", "gallery", "sample", "channels", "cache_dir"),
        io=stage_io,
    threads: 2
    resources:
        mem_mb=2000,
        runtime=240,
    conda:
        CPU_ENV
    shell:
        "python -m workflow_scripts.fetch plate --settings {params.settings:q} {params.io} 2> {log:q}"


rule fetched:
    """Download every plate's images and nothing else: `snakemake fetched` stages the pixels."""
    input:
        plate_targets(f"{PLATE_DIR}/fetch/manifest.parquet"),
    localrule: True


rule plan_plate:
    output:
        plan=f"{PLATE_DIR}/fetch/plan.json",
    log:
        f"{LOGS}/plan/{PLATE_ID}.log",
    benchmark:
        f"{BENCHMARKS}/plan/{PLATE_ID}.tsv"
    params:
        settings=stage_settings("fetch", "gallery", "sample", "channels", "cache_dir", "features", "cellprofiler"),
        io=stage_io,
    localrule: True
    conda:
        CPU_ENV
    shell:
        "python -m workflow_scripts.fetch plan --settings {params.settings:q} {params.io} 2> {log:q}"


rule plan:
    """Print the objects and bytes each plate would download, its CellProfiler output apart; downloads no image."""
    input:
        plans=plate_targets(f"{PLATE_DIR}/fetch/plan.json"),
    output:
        summary=f"{RESULTS}/fetch_plan.tsv",
    log:
        f"{LOGS}/plan/summary.log",
    benchmark:
        f"{BENCHMARKS}/plan/summary.tsv"
    params:
        io=stage_io,
    localrule: True
    conda:
        CPU_ENV
    shell:
        "python -m workflow_scripts.fetch summary {params.io} 2> {log:q}"
