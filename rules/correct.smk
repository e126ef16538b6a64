# Correct: batch correction of the selected profiles, one method or chain per
# job, with the fitted model and its lineage beside the output.


rule correct:
    input:
        locked_model,
        selected=f"{COLLECTION}/{{features}}/selected.parquet",
    output:
        corrected=f"{COLLECTION}/{{features}}/corrected/{{method}}.parquet",
        model=f"{COLLECTION}/{{features}}/models/{{method}}.npz",
        lineage=f"{COLLECTION}/{{features}}/models/{{method}}.json",
    log:
        f"{LOGS}/correct/{{features}}/{{method}}.log",
    benchmark:
        f"{BENCHMARKS}/correct/{{features}}/{{method}}.tsv"
    params:
        settings=stage_settings("correction"),
        io=stage_io,
    threads: 2
    resources:
        mem_mb=16000,
        runtime=120,
    conda:
        CPU_ENV
    shell:
        "python -m workflow_scripts.correct --settings {params.settings:q} {params.io} --threads {threads} 2> {log:q}"
