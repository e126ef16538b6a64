# Convert: each fetched plate becomes an OME-Zarr HCS plate.


rule convert:
    input:
        load_data=f"{PLATE_DIR}/load_data.parquet",
        manifest=f"{PLATE_DIR}/fetch/manifest.parquet",
    output:
        directory(f"{PLATE_DIR}/{{plate}}.ome.zarr"),
    log:
        f"{LOGS}/convert/{PLATE_ID}.log",
    benchmark:
        f"{BENCHMARKS}/convert/{PLATE_ID}.tsv"
    params:
        args=convert_args,
    threads: config["convert"]["workers"]
    resources:
        mem_mb=lambda wildcards, threads: 1500 + 500 * threads,
        runtime=240,
    conda:
        CPU_ENV
    shell:
        "python -m workflow_scripts.omezarr --load-data {input.load_data:q} --output {output:q}"
        " --workers {threads} {params.args} 2> {log:q}"
