# Evaluate: the KPIs of every correction method, the gate's choice of a
# correction, and negative-control drift across plates, per feature set.


rule evaluate:
    input:
        corrected=lambda wildcards: expand(
            f"{COLLECTION}/{wildcards.features}/corrected/{{method}}.parquet", method=config["correction"]["methods"]
        ),
    output:
        kpis=report(
            f"{COLLECTION}/{{features}}/kpis.parquet",
            caption="captions/kpis.rst",
            category="KPIs",
            labels={"features": "{features}", "table": "KPIs"},
        ),
        activity=f"{COLLECTION}/{{features}}/activity.parquet",
        consensus=f"{COLLECTION}/{{features}}/consensus.parquet",
    log:
        f"{LOGS}/evaluate/{{features}}/kpis.log",
    benchmark:
        f"{BENCHMARKS}/evaluate/{{features}}/kpis.tsv"
    params:
        settings=stage_settings("evaluation"),
        io=stage_io,
    threads: 2
    resources:
        mem_mb=16000,
        runtime=120,
    conda:
        CPU_ENV
    shell:
        "python -m workflow_scripts.evaluate kpis --settings {params.settings:q} {params.io} --threads {threads} 2> {log:q}"


rule gate:
    input:
        kpis=f"{COLLECTION}/{{features}}/kpis.parquet",
    output:
        selected_method=report(
            f"{COLLECTION}/{{features}}/selected_method.json",
            caption="captions/selected_method.rst",
            category="KPIs",
            labels={"features": "{features}", "table": "chosen correction"},
        ),
    log:
        f"{LOGS}/evaluate/{{features}}/gate.log",
    benchmark:
        f"{BENCHMARKS}/evaluate/{{features}}/gate.tsv"
    params:
        settings=stage_settings("evaluation"),
        io=stage_io,
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        CPU_ENV
    shell:
        "python -m workflow_scripts.evaluate gate --settings {params.settings:q} {params.io} 2> {log:q}"


rule drift:
    input:
        plates_annotated=lambda wildcards: plate_targets(
            f"{PLATE_DIR}/profiles/{wildcards.features}_annotated.parquet"
        ),
    output:
        drift=report(
            f"{COLLECTION}/{{features}}/drift.parquet",
            caption="captions/drift.rst",
            category="Drift",
            labels={"features": "{features}", "table": "control drift"},
        ),
    log:
        f"{LOGS}/evaluate/{{features}}/drift.log",
    benchmark:
        f"{BENCHMARKS}/evaluate/{{features}}/drift.tsv"
    params:
        settings=stage_settings("evaluation", "plates", "dataset", "select"),
        io=stage_io,
    resources:
        mem_mb=8000,
        runtime=30,
    conda:
        CPU_ENV
    shell:
        "python -m workflow_scripts.evaluate drift --settings {params.settings:q} {params.io} 2> {log:q}"
