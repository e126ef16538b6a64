# CellProfiler: the gallery's single-cell features aggregated to wells (CPU nodes).


rule cellprofiler:
    output:
        f"{PLATE_DIR}/cellprofiler/wells.parquet",
    log:
        f"{LOGS}/cellprofiler/{PLATE_ID}.log",
    benchmark:
        f"{BENCHMARKS}/cellprofiler/{PLATE_ID}.tsv"
    params:
        args=cellprofiler_args,
    threads: config["cellprofiler"]["workers"]
    resources:
        mem_mb=8000,
        runtime=240,
    conda:
        CPU_ENV
    shell:
        "python -m workflow_scripts.cellprofiler --out {output:q} --workers {threads} {params.args} 2> {log:q}"
