# Report: one self-contained HTML page a scientist reads, from every plate's
# QC and profiles and every feature set's corrections, KPIs and drift.


rule report:
    input:
        unpack(report_inputs),
    output:
        report=report(f"{RESULTS}/report/index.html", caption="captions/report.rst", category="Report"),
    log:
        f"{LOGS}/report/report.log",
    benchmark:
        f"{BENCHMARKS}/report/report.tsv"
    params:
        settings=stage_settings(*config),
        io=stage_io,
    threads: 2
    resources:
        mem_mb=8000,
        runtime=60,
    conda:
        CPU_ENV
    shell:
        "python -m workflow_scripts.report --settings {params.settings:q} {params.io} --threads {threads} 2> {log:q}"
