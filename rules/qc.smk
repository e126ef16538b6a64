# QC: per-field focus, saturation, intensity and nuclei metrics, flags and plate heatmaps.


rule qc:
    input:
        f"{PLATE_DIR}/{{plate}}.ome.zarr",
    output:
        fields=f"{PLATE_DIR}/qc/fields.parquet",
        heatmaps=expand(f"{PLATE_DIR}/qc/heatmap_{{metric}}.png", metric=QC_HEATMAPS, allow_missing=True),
    log:
        f"{LOGS}/qc/{PLATE_ID}.log",
    benchmark:
        f"{BENCHMARKS}/qc/{PLATE_ID}.tsv"
    params:
        out_dir=subpath(output.fields, parent=True),
        args=qc_args,
    threads: 2
    resources:
        mem_mb=3000,
        runtime=120,
    conda:
        CPU_ENV
    shell:
        "python -m workflow_scripts.qc --plate {input:q} --out-dir {params.out_dir:q}"
        " {params.args} --workers {threads} 2> {log:q}"
