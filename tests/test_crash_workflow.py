"""Runs killed at random points resume to exactly what an uninterrupted run writes.

One pass through the DAG on two plates of the demo gallery. For each stage
in ``STAGES``, Snakemake is asked for that stage's outputs (what precedes
them runs first), and the whole run (Snakemake and its jobs: one process
group) is SIGKILLed once one of its jobs has run a random fraction (at most
half) of the stage's shortest job time in the reference; ``KILLS`` kills in
all, every stage at least once,
the rest and every delay drawn with ``SEED``. Each killed run is unlocked
(``snakemake --unlock``) and the next run given ``--rerun-incomplete``, as
the local profile does. Then every output written so far must equal, byte
for byte, the uninterrupted reference made under the same results path, and
no job that Snakemake had recorded as finished may run again. What may
differ between two runs is ``tests.support.crash.VARYING`` (logs,
benchmarks, Snakemake's bookkeeping, the download cache's sidecars).

A rerun may also get another thread count (``--cores``, another node):
the correct stage, whose BLAS sums once rounded differently with it, must
write the same bytes with one thread or two.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.correct_synthetic import Design, stage_args, synthetic_profiles
from tests.support.crash import (
    Kill,
    Transcript,
    atomic_temporaries,
    output_digests,
    run_and_kill,
    shortest_job_seconds,
    unlock,
)
from tests.support.workflow import plate_dir, run_snakemake
from workflow_scripts.atomic import write_text_atomic
from workflow_scripts.correct.__main__ import main as correct_main
from workflow_scripts.provenance import write_table

STAGES = ("fetch", "omezarr", "dino", "cellprofiler", "profiles", "correct", "report")
KILLS = 10
SEED = 20260
FEATURES = ["dino", "cellprofiler"]
METHODS = ["none", "harmony"]
RERUN = "--rerun-incomplete"


def crash_config(plates: list[str]) -> dict:
    """Two plates, one site per well (site 1 exists under both numbering conventions), two corrections."""
    return {
        "select": {"plates": plates},
        "sample": {"sites": [1]},
        "features": FEATURES,
        "correction": {"methods": METHODS},
        "evaluation": {"null_size": 100},
    }


def kill_plan(seed: int = SEED) -> list[tuple[str, float]]:
    """(stage, fraction of its shortest job time in the reference) per kill, in DAG order.

    Each stage once, the rest drawn. At most half that time, so that a job
    running faster than in the reference (a less busy machine) is still
    running when the kill comes.
    """
    rng = random.Random(seed)
    stages = list(STAGES) + rng.choices(STAGES, k=KILLS - len(STAGES))
    return [(stage, round(rng.uniform(0.05, 0.5), 3)) for stage in sorted(stages, key=STAGES.index)]


def stage_targets(stage: str, results: Path, layout, plates: list) -> list[str]:
    """The outputs that make Snakemake run ``stage`` (and whatever precedes it) for the selected plates."""
    folders = [(p, plate_dir(results, layout.dataset, p.source, p.batch, p.plate)) for p in plates]
    per_plate = {
        "fetch": lambda p, d: [d / "load_data.parquet", d / "fetch" / "manifest.parquet"],
        "omezarr": lambda p, d: [d / f"{p.plate}.ome.zarr"],
        "dino": lambda p, d: [d / "dino" / "wells.parquet"],
        "cellprofiler": lambda p, d: [d / "cellprofiler" / "wells.parquet"],
        "profiles": lambda p, d: [d / "profiles" / f"{f}.parquet" for f in FEATURES],
    }
    if stage in per_plate:
        return [str(path) for p, d in folders for path in per_plate[stage](p, d)]
    if stage == "correct":
        return [str(results / "collection" / f / "corrected" / f"{m}.parquet") for f in FEATURES for m in METHODS]
    return [str(results / "report" / "index.html")]


@dataclass
class CrashPass:
    """Everything the pass did: kills, every run's transcript in order, and what differed after each stage."""

    reference: Path
    results: Path
    config: dict
    kills: list[Kill] = field(default_factory=list)
    runs: list[Transcript] = field(default_factory=list)
    differing: dict[str, list[str]] = field(default_factory=dict)

    def summary(self) -> dict:
        """What each kill interrupted and what each stage's reruns left differing, for a person to read."""
        kills = [
            {"stage": k.rule, "delay_s": round(k.delay, 2), "interrupted": [j.outputs[0] for j in k.interrupted]}
            for k in self.kills
        ]
        return {"kills": kills, "differing": self.differing, "atomic_temporaries": atomic_temporaries(self.results)}


@pytest.fixture(scope="module")
def crash_pass(demo_gallery, s3_server, tmp_path_factory) -> CrashPass:
    layout, root = demo_gallery
    plates = list(layout.plates[:2])
    config = crash_config([p.plate for p in plates])
    base = tmp_path_factory.mktemp("crash")
    results, reference = base / "results", base / "reference"

    def snakemake(*args: str, **options):
        return run_snakemake(results, root / "plates.csv", s3_server.endpoint_url, *args, config=config, **options)

    snakemake()  # the uninterrupted run, then moved aside: outputs record the results path they were made under
    results.rename(reference)
    expected = output_digests(reference)
    record = CrashPass(reference, results, config)
    plan = kill_plan()
    for stage in STAGES:
        targets = stage_targets(stage, results, layout, plates)
        for fraction in [f for s, f in plan if s == stage]:
            delay = fraction * shortest_job_seconds(reference, stage)
            kill = run_and_kill(
                results,
                root / "plates.csv",
                s3_server.endpoint_url,
                RERUN,
                *targets,
                config=config,
                rule=stage,
                delay=delay,
            )
            record.kills.append(kill)
            record.runs.append(kill.transcript)
            unlock(results, root / "plates.csv", s3_server.endpoint_url, config)
        completed = snakemake(RERUN, *targets)
        record.runs.append(Transcript(completed.stdout + completed.stderr))
        written = output_digests(results)
        record.differing[stage] = sorted(path for path, digest in written.items() if expected.get(path) != digest)
    (base / "crash_pass.json").write_text(json.dumps(record.summary(), indent=1))
    return record


@pytest.mark.workflow
def test_every_stage_was_killed_while_one_of_its_jobs_ran(crash_pass):
    assert Counter(kill.rule for kill in crash_pass.kills) == Counter(stage for stage, _ in kill_plan())
    assert {kill.rule for kill in crash_pass.kills} == set(STAGES)
    for kill in crash_pass.kills:
        assert kill.killed and kill.interrupted, (kill.rule, kill.delay, kill.transcript.text[-3000:])
        assert all(job.rule == kill.rule for job in kill.interrupted)


@pytest.mark.workflow
def test_each_rerun_writes_what_the_uninterrupted_run_wrote(crash_pass):
    assert {stage: paths for stage, paths in crash_pass.differing.items() if paths} == {}
    assert output_digests(crash_pass.results) == output_digests(crash_pass.reference)


@pytest.mark.workflow
def test_no_finished_job_runs_again(crash_pass):
    finished: set = set()
    for number, run in enumerate(crash_pass.runs):
        again = [job for job in run.started if job in finished]
        assert again == [], f"run {number} reran finished job(s) {again}"
        finished |= set(run.finished)


@pytest.mark.workflow
def test_the_resumed_run_is_complete(crash_pass, demo_gallery, s3_server):
    """After the last stage's rerun, Snakemake sees nothing left to do for the whole workflow."""
    _, root = demo_gallery
    dry = run_snakemake(
        crash_pass.results, root / "plates.csv", s3_server.endpoint_url, "--dry-run", config=crash_pass.config
    )
    assert "Nothing to be done" in dry.stdout + dry.stderr


@pytest.mark.parametrize("method", ["sphering", "harmony"])
def test_correction_writes_the_same_bytes_with_one_thread_or_two(method, tmp_path):
    """Profiles shaped like the demo's DINO collection (few wells, 384 features), where two BLAS threads
    once changed sphering's output and Harmony's PCA in the last bits."""
    design = Design(
        batches=2, plates_per_batch=1, wells_per_plate=16, negcon_per_plate=6, perturbations=5, features=384
    )
    selected = tmp_path / "selected.parquet"
    write_table(synthetic_profiles(design), selected, "select", {"operations": ["drop_na_columns"]})
    written = []
    for threads in ("1", "2"):
        collection = tmp_path / threads
        assert correct_main([*stage_args(collection, selected, method), "--threads", threads]) == 0
        written.append(output_digests(collection))
    assert written[0] == written[1] and len(written[0]) == 3


def test_a_write_removes_what_a_killed_write_of_the_same_file_left(tmp_path):
    """SIGKILL skips the temporary file's cleanup; the next write of the target removes it, and only it."""
    target = tmp_path / "wells.parquet"
    left = tmp_path / f".{target.name}.k1ll3d.tmp"
    other = tmp_path / ".other.parquet.k1ll3d.tmp"
    left.write_bytes(b"half")
    other.write_bytes(b"half")
    write_text_atomic("done", target)
    assert target.read_text() == "done" and not left.exists() and other.exists()
