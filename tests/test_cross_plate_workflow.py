"""Adding a plate to a finished run, refitting and locked: real Snakemake on the demo gallery.

Adding a plate reruns evaluate, gate, drift and the report, which lists the new plate.

Only the new plate's per-plate jobs and the cross-plate jobs run, as
Snakemake's own job summary says; in locked mode the earlier plates'
corrected rows are byte-identical to the run that fitted the models.
"""

from __future__ import annotations

import shutil

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.support.workflow import job_counts, run_snakemake

pytestmark = pytest.mark.workflow

PER_PLATE = ("fetch", "omezarr", "qc", "cellprofiler", "profiles")
LOCKABLE = ["none", "sphering", "control_std", "combat"]
CONFIG = {"features": ["cellprofiler"], "correction": {"methods": LOCKABLE}}


def _config(plates: list[str], **correction) -> dict:
    return {**CONFIG, "select": {"plates": plates}, "correction": {**CONFIG["correction"], **correction}}


def _rows(path, plates: list[str]) -> pa.Table:
    """The corrected rows of ``plates``, as stored (Arrow), in file order."""
    table = pq.read_table(path)
    keep = pd.Series(table.column("Metadata_Plate").to_pylist()).isin(plates).to_numpy()
    return table.filter(pa.array(keep)).replace_schema_metadata(None)


@pytest.fixture(scope="module")
def grown(demo_gallery, s3_server, tmp_path_factory):
    """Two plates, then a third; the first run's collection kept aside as the locked model."""
    layout, root = demo_gallery
    names = [plate.plate for plate in layout.plates]
    assert len(names) >= 3, "the small demo needs three plates for this test"
    first, added = names[:2], names[2]
    results = tmp_path_factory.mktemp("grown")
    def run(config: dict, *targets: str):
        return run_snakemake(results, root / "plates.csv", s3_server.endpoint_url, *targets, config=config)

    run(_config(first))
    frozen = results / "frozen-collection"
    shutil.copytree(results / "collection", frozen)
    grew = run(_config(first + [added]))
    corrected = [str(results / "collection" / "cellprofiler" / "corrected" / f"{m}.parquet") for m in LOCKABLE]
    locked = run(_config(first + [added], locked=str(frozen)), *corrected)  # the tail of the DAG is enough
    return layout, results, frozen, first, added, grew, locked


def test_adding_a_plate_runs_only_its_jobs_and_the_cross_plate_ones(grown):
    layout, results, frozen, first, added, grew, locked = grown
    counts = job_counts(grew)
    assert {rule: counts.get(rule, 0) for rule in PER_PLATE} == {rule: 1 for rule in PER_PLATE}, counts
    assert counts["collect"] == 1 and counts["select"] == 1 and counts["correct"] == len(LOCKABLE)
    assert {rule: counts.get(rule) for rule in ("evaluate", "gate", "drift", "report")} == dict.fromkeys(
        ("evaluate", "gate", "drift", "report"), 1
    )
    collected = pd.read_parquet(results / "collection" / "cellprofiler" / "profiles.parquet")
    assert set(collected["Metadata_Plate"]) == set(first) | {added}
    drift = pd.read_parquet(results / "collection" / "cellprofiler" / "drift.parquet")
    assert set(drift["Metadata_Plate"]) == set(first) | {added}
    report = (results / "report" / "index.html").read_text()
    assert all(plate in report for plate in first + [added])


def test_locked_run_keeps_earlier_rows_byte_identical(grown):
    layout, results, frozen, first, added, grew, locked = grown
    counts = job_counts(locked)
    assert not any(counts.get(rule) for rule in PER_PLATE), counts
    for method in LOCKABLE:
        before = frozen / "cellprofiler" / "corrected" / f"{method}.parquet"
        after = results / "collection" / "cellprofiler" / "corrected" / f"{method}.parquet"
        assert _rows(after, first).equals(_rows(before, first)), method
        assert added in set(pq.read_table(after).column("Metadata_Plate").to_pylist()), method
    assert pq.read_schema(results / "collection" / "cellprofiler" / "selected.parquet").names == pq.read_schema(
        frozen / "cellprofiler" / "selected.parquet"
    ).names


def test_locked_harmony_stops_before_any_job(grown, demo_gallery, s3_server):
    layout, results, frozen, first, added, grew, locked = grown
    _, root = demo_gallery
    config = _config(first + [added], locked=str(frozen), methods=["harmony"])
    target = str(results / "collection" / "cellprofiler" / "corrected" / "harmony.parquet")
    result = run_snakemake(
        results, root / "plates.csv", s3_server.endpoint_url, "--dry-run", target, config=config, check=False
    )
    assert result.returncode != 0
    assert "cannot be locked" in result.stdout + result.stderr
