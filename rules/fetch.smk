# Fetch: LoadData, images and illumination files of each plate from S3, and
# the plate's CellProfiler output (the cellprofiler rule's declared input).


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


rule fetch_backend:
    output:
        manifest=f"{PLATE_DIR}/fetch/cellprofiler.parquet",
    log:
        f"{LOGS}/fetch_backend/{PLATE_ID}.log",
    benchmark:
        f"{BENCHMARKS}/fetch_backend/{PLATE_ID}.tsv"
    params:
        settings=stage_settings("cellprofiler", "fetch", "gallery", "cache_dir"),
        io=stage_io,
    threads: 2
    resources:
        mem_mb=2000,
        runtime=240,
    conda:
        CPU_ENV
    shell:
        "python -m workflow_scripts.fetch backend --settings {params.settings:q} {params.io} 2> {log:q}"


rule fetch_platemap:
    output:
        platemap=f"{PLATE_DIR}/fetch/platemap.parquet",
    log:
        f"{LOGS}/fetch_platemap/{PLATE_ID}.log",
    benchmark:
        f"{BENCHMARKS}/fetch_platemap/{PLATE_ID}.tsv"
    params:
        settings=stage_settings("annotation", "fetch", "gallery", "cache_dir"),
        io=stage_io,
    resources:
        mem_mb=1000,
        runtime=30,
    conda:
        CPU_ENV
    shell:
        "python -m workflow_scripts.fetch platemap --settings {params.settings:q} {params.io} 2> {log:q}"


rule fetched:
    """Download every plate's objects and nothing else: `snakemake fetched` stages the data."""
    input:
        plate_targets(f"{PLATE_DIR}/fetch/manifest.parquet"),
        plate_targets(f"{PLATE_DIR}/fetch/cellprofiler.parquet") if "cellprofiler" in config["features"] else [],
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
