# Profiles: each plate's well profiles annotated with its platemap and
# normalized against its negative controls, every feature set in one job
# (CPU nodes).


rule profiles:
    input:
        unpack(profiles_inputs),
    output:
        platemap=f"{PLATE_DIR}/fetch/platemap.parquet",
        **{f"profiles_{features}": f"{PLATE_DIR}/profiles/{features}.parquet" for features in config["features"]},
        **{
            f"annotated_{features}": f"{PLATE_DIR}/profiles/{features}_annotated.parquet"
            for features in config["features"]
        },
    log:
        f"{LOGS}/profiles/{PLATE_ID}.log",
    benchmark:
        f"{BENCHMARKS}/profiles/{PLATE_ID}.tsv"
    params:
        settings=stage_settings(
            "annotation", "normalization", "features", "plates", "dataset", "gallery", "fetch", "cache_dir"
        ),
        io=stage_io,
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        CPU_ENV
    shell:
        "python -m workflow_scripts.profiles --settings {params.settings:q} {params.io} --threads {threads} 2> {log:q}"
