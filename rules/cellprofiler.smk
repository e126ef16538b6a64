# CellProfiler: the plate's CellProfiler output fetched and its single cells
# aggregated to wells, without the fields QC excludes (CPU nodes).


rule cellprofiler:
    input:
        qc=f"{PLATE_DIR}/qc/fields.parquet",
    output:
        wells=f"{PLATE_DIR}/cellprofiler/wells.parquet",
        backend=f"{PLATE_DIR}/fetch/cellprofiler.parquet",
    log:
        f"{LOGS}/cellprofiler/{PLATE_ID}.log",
    benchmark:
        f"{BENCHMARKS}/cellprofiler/{PLATE_ID}.tsv"
    params:
        settings=stage_settings("cellprofiler", "fetch", "gallery", "cache_dir"),
        io=stage_io,
    threads: config["cellprofiler"]["workers"]
    resources:
        mem_mb=8000,
        runtime=240,
    conda:
        CPU_ENV
    shell:
        "python -m workflow_scripts.cellprofiler --settings {params.settings:q} {params.io} --threads {threads} 2> {log:q}"
