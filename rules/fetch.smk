# Fetch: LoadData, images and illumination files of each plate from S3.


rule fetch:
    output:
        load_data=f"{PLATE_DIR}/load_data.parquet",
        manifest=f"{PLATE_DIR}/fetch/manifest.parquet",
    log:
        f"{LOGS}/fetch/{PLATE_ID}.log",
    benchmark:
        f"{BENCHMARKS}/fetch/{PLATE_ID}.tsv"
    params:
        args=fetch_args,
    threads: 2
    resources:
        mem_mb=2000,
        runtime=240,
    conda:
        CPU_ENV
    shell:
        "python -m workflow_scripts.fetch plate {params.args}"
        " --out-load-data {output.load_data:q} --out-manifest {output.manifest:q} 2> {log:q}"


rule plan_plate:
    output:
        f"{PLATE_DIR}/fetch/plan.json",
    log:
        f"{LOGS}/plan/{PLATE_ID}.log",
    benchmark:
        f"{BENCHMARKS}/plan/{PLATE_ID}.tsv"
    params:
        args=fetch_args,
    localrule: True
    conda:
        CPU_ENV
    shell:
        "python -m workflow_scripts.fetch plan {params.args} --out {output:q} 2> {log:q}"


rule plan:
    """Print the objects and bytes each plate would download; downloads no image."""
    input:
        plate_targets(f"{PLATE_DIR}/fetch/plan.json"),
    output:
        f"{RESULTS}/fetch_plan.tsv",
    log:
        f"{LOGS}/plan/summary.log",
    benchmark:
        f"{BENCHMARKS}/plan/summary.tsv"
    localrule: True
    conda:
        CPU_ENV
    shell:
        "python -m workflow_scripts.fetch summary {input:q} --out {output:q} 2> {log:q}"
