# DINO: segmentation-free ViT embeddings per field and per well (GPU nodes).


rule dino:
    input:
        require_checkpoint,
        plate=f"{PLATE_DIR}/{{plate}}.ome.zarr",
        qc=f"{PLATE_DIR}/qc/fields.parquet",
    output:
        wells=f"{PLATE_DIR}/dino/wells.parquet",
        fields=f"{PLATE_DIR}/dino/fields.parquet",
    log:
        f"{LOGS}/dino/{PLATE_ID}.log",
    benchmark:
        f"{BENCHMARKS}/dino/{PLATE_ID}.tsv"
    params:
        settings=stage_settings("embedding", "gallery", "cache_dir"),
        io=stage_io,
    threads: 4
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=60,
    conda:
        GPU_ENV
    shell:
        "python -m workflow_scripts.dino --settings {params.settings:q} {params.io} --threads {threads} 2> {log:q}"
