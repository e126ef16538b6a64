# Report: one self-contained HTML page a scientist reads, from every plate's
# QC and profiles and every feature set's corrections, KPIs and drift.


def report_inputs(wildcards):
    """Everything the report shows; per-plate files in plate-table order."""
    inputs = {
        "qc": plate_targets(f"{PLATE_DIR}/qc/fields.parquet"),
        "heatmaps": plate_targets(expand(f"{PLATE_DIR}/qc/heatmap_{{metric}}.png", metric=QC_HEATMAPS, allow_missing=True)),
        "illum": plate_targets(f"{PLATE_DIR}/qc/illum"),
    }
    for features in config["features"]:
        inputs[f"annotated_{features}"] = plate_targets(f"{PLATE_DIR}/profiles/{features}_annotated.parquet")
        inputs[f"profiles_{features}"] = plate_targets(f"{PLATE_DIR}/profiles/{features}.parquet")
        inputs[f"corrected_{features}"] = expand(
            f"{COLLECTION}/{features}/corrected/{{method}}.parquet", method=config["correction"]["methods"]
        )
        for name in ("kpis", "selected_method", "drift"):
            suffix = "json" if name == "selected_method" else "parquet"
            inputs[f"{name}_{features}"] = f"{COLLECTION}/{features}/{name}.{suffix}"
    if "dino" in config["features"]:
        inputs["dino"] = plate_targets(f"{PLATE_DIR}/dino/wells.parquet")
    return inputs


PER_PLATE_INPUTS = ("qc", "heatmaps", "illum", "annotated_", "profiles_", "dino")


def report_io(wildcards, input, output):
    """The stage options without the per-plate inputs: the stage finds those from the plate table."""
    cross_plate = {name: files for name, files in input.items() if not name.startswith(PER_PLATE_INPUTS)}
    return stage_io(wildcards, cross_plate, output)


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
        io=report_io,
    threads: 2
    resources:
        mem_mb=8000,
        runtime=60,
    conda:
        CPU_ENV
    shell:
        "python -m workflow_scripts.report --settings {params.settings:q} {params.io} --threads {threads} 2> {log:q}"
