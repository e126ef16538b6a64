# QC: per-field focus, saturation, intensity and nuclei metrics, flags, plate
# heatmaps, and illumination functions computed where the gallery has none.


rule qc:
    input:
        plate=f"{PLATE_DIR}/{{plate}}.ome.zarr",
    output:
        fields=f"{PLATE_DIR}/qc/fields.parquet",
        heatmaps=directory(f"{PLATE_DIR}/qc/heatmaps"),
        illum=directory(f"{PLATE_DIR}/qc/illum"),
    log:
        f"{LOGS}/qc/{PLATE_ID}.log",
    benchmark:
        f"{BENCHMARKS}/qc/{PLATE_ID}.tsv"
    params:
        settings=stage_settings("qc"),
        io=stage_io,
    threads: 2
    resources:
        mem_mb=3000,
        runtime=120,
    conda:
        CPU_ENV
    shell:
        "python -m workflow_scripts.qc --settings {params.settings:q} {params.io} --threads {threads} 2> {log:q}"
