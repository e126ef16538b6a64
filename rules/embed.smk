# Embed: segmentation-free DINO ViT embeddings per field and per well (GPU nodes).


rule embed:
    input:
        plate=f"{PLATE_DIR}/{{plate}}.ome.zarr",
        qc=f"{PLATE_DIR}/qc/fields.parquet",
    output:
        wells=f"{PLATE_DIR}/dino/wells.parquet",
        fields=f"{PLATE_DIR}/dino/fields.parquet",
    log:
        f"{LOGS}/embed/{PLATE_ID}.log",
    benchmark:
        f"{BENCHMARKS}/embed/{PLATE_ID}.tsv"
    params:
        args=embed_args,
    threads: 4
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=60,
    conda:
        GPU_ENV
    shell:
        "python -m workflow_scripts.embed --plate-zarr {input.plate:q} --qc-fields {input.qc:q}"
        " --out-wells {output.wells:q} --out-fields {output.fields:q} {params.args} 2> {log:q}"
