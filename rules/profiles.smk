# Profiles: each plate's well profiles annotated with its platemap and
# normalized against its negative controls, per feature set (CPU nodes).


rule profiles:
    input:
        wells=f"{PLATE_DIR}/{{features}}/wells.parquet",
        platemap=f"{PLATE_DIR}/fetch/platemap.parquet",
        batch_wells=batch_wells,
    output:
        profiles=f"{PLATE_DIR}/profiles/{{features}}.parquet",
        annotated=f"{PLATE_DIR}/profiles/{{features}}_annotated.parquet",
    log:
        f"{LOGS}/profiles/{PLATE_ID}/{{features}}.log",
    benchmark:
        f"{BENCHMARKS}/profiles/{PLATE_ID}/{{features}}.tsv"
    params:
        settings=stage_settings("annotation", "normalization", "plates", "dataset", "gallery", "fetch", "cache_dir"),
        io=stage_io,
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        CPU_ENV
    shell:
        "python -m workflow_scripts.profiles --settings {params.settings:q} {params.io} --threads {threads} 2> {log:q}"
