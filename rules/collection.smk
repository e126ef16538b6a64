# Collection: every plate's profiles of a feature set in one table, then
# feature selection across plates.


rule collect:
    input:
        plates_profiles=lambda wildcards: plate_targets(f"{PLATE_DIR}/profiles/{wildcards.features}.parquet"),
    output:
        profiles=f"{COLLECTION}/{{features}}/profiles.parquet",
    log:
        f"{LOGS}/collection/{{features}}/collect.log",
    benchmark:
        f"{BENCHMARKS}/collection/{{features}}/collect.tsv"
    params:
        settings=stage_settings("selection", "plates", "dataset", "select"),
        io=stage_io,
    resources:
        mem_mb=8000,
        runtime=60,
    conda:
        CPU_ENV
    shell:
        "python -m workflow_scripts.collection collect --settings {params.settings:q} {params.io} 2> {log:q}"


rule select:
    input:
        locked_model,
        profiles=f"{COLLECTION}/{{features}}/profiles.parquet",
    output:
        selected=f"{COLLECTION}/{{features}}/selected.parquet",
    log:
        f"{LOGS}/collection/{{features}}/select.log",
    benchmark:
        f"{BENCHMARKS}/collection/{{features}}/select.tsv"
    params:
        settings=stage_settings("selection", "correction"),
        io=stage_io,
    resources:
        mem_mb=8000,
        runtime=60,
    conda:
        CPU_ENV
    shell:
        "python -m workflow_scripts.collection select --settings {params.settings:q} {params.io} 2> {log:q}"
