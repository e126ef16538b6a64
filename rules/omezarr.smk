# OME-Zarr: each fetched plate becomes an OME-Zarr HCS plate, {plate}.ome.zarr.


rule omezarr:
    input:
        load_data=f"{PLATE_DIR}/load_data.parquet",
        manifest=f"{PLATE_DIR}/fetch/manifest.parquet",
    output:
        plate=directory(f"{PLATE_DIR}/{{plate}}.ome.zarr"),
    log:
        f"{LOGS}/omezarr/{PLATE_ID}.log",
    benchmark:
        f"{BENCHMARKS}/omezarr/{PLATE_ID}.tsv"
    params:
        settings=stage_settings("convert", "channels", "cache_dir"),
        io=stage_io,
    threads: config["convert"]["workers"]
    resources:
        mem_mb=lambda wildcards, threads: 1500 + 500 * threads,
        runtime=240,
    conda:
        CPU_ENV
    shell:
        "python -m workflow_scripts.omezarr --settings {params.settings:q} {params.io} --threads {threads} 2> {log:q}"
