"""The workflow on a real one-node SLURM cluster, through ``profiles/slurm`` and the SLURM executor plugin.

Two demo plates, both feature sets, every stage through the report. Every job
goes through sbatch (slurmctld's records name each one's rule), the GPU rule's
request reaches its jobs although the node has no GPU, and the data tables
equal those of a local run of the same configuration.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.support.slurm import PARTITION, SLURM_CONF, ClusterUnavailable, LocalCluster
from tests.support.workflow import REPO, job_counts, run_snakemake
from workflow_scripts.demo.design import DemoLayout

pytestmark = [pytest.mark.slurm, pytest.mark.workflow]

ACCOUNT = "workflowtest"
PLACEHOLDERS = {"<cpu-partition>": PARTITION, "<gpu-partition>": PARTITION, "<account>": ACCOUNT}
# A status check one second after submission, not 40 (nor 10 more per check without news).
STATUS_CHECKS = {
    "slurm-status-command": "squeue",  # no slurmdbd here, so no sacct
    "slurm-init-seconds-before-status-checks": 1,
    "seconds-between-status-checks": 1,
}
# Rules of the target itself, which run where Snakemake runs.
LOCAL_RULES = {"all"}
# One thread per job: the node runs as many jobs as it has CPUs, and both runs compute alike.
THREADS = "1"
# Tables that describe the data; fetch/ (download manifests) and load_data hold this run's paths and times.
DATA_TABLES = ("qc", "dino", "cellprofiler", "profiles")


def _config(layout: DemoLayout) -> dict:
    """The smallest run with every stage: two plates (two batches), one site per well, one correction, small nulls."""
    plates = [plate.plate for plate in layout.plates[:2]]
    return {
        "select": {"plates": plates},
        "sample": {"sites": [1]},
        "features": ["dino", "cellprofiler"],
        "correction": {"methods": ["sphering"]},
        "evaluation": {"null_size": 100, "classifier_folds": 2},
        "report": {"max_plates": 0},
    }


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """The one-node cluster, for this module only: no daemon outlives it."""
    try:
        with LocalCluster(tmp_path_factory.mktemp("slurm", numbered=True)) as running:
            yield running
    except ClusterUnavailable as reason:
        pytest.skip(f"no SLURM test cluster: {reason}")


@pytest.fixture(scope="module")
def local_run(cluster, demo_gallery, s3_server, tmp_path_factory):
    """The reference: the same configuration with the local executor, in a thread while the cluster works.

    Yields a future of its results folder. Most of the SLURM run's time is
    waiting (submission, status checks, each job's own Snakemake), which the
    local run fills.
    """
    layout, root = demo_gallery
    results = tmp_path_factory.mktemp("local")

    def reference() -> Path:
        run_snakemake(
            results, root / "plates.csv", s3_server.endpoint_url, "--max-threads", THREADS, config=_config(layout)
        )
        return results

    with ThreadPoolExecutor(max_workers=1) as pool:
        yield pool.submit(reference)


def _rule_names() -> list[str]:
    """Every rule the workflow defines, read from its rule files, so the test sizes rules it does not name."""
    sources = [REPO / "Snakefile", *sorted((REPO / "rules").glob("*.smk"))]
    return [name for path in sources for name in re.findall(r"^rule (\w+):", path.read_text(), flags=re.MULTILINE)]


def _test_profile(folder: Path, cluster: LocalCluster, rules: list[str], logs: Path) -> Path:
    """``profiles/slurm`` with its placeholders filled in for the test cluster, every rule sized for its node."""
    text = (REPO / "profiles" / "slurm" / "config.yaml").read_text()
    for placeholder, value in PLACEHOLDERS.items():
        text = text.replace(placeholder, value)
    profile = yaml.safe_load(text)
    memory = cluster.memory_mb // cluster.cpus
    profile.update(STATUS_CHECKS)
    profile["slurm-logdir"] = str(logs)
    sized = profile.setdefault("set-resources", {})
    for rule in rules:
        sized.setdefault(rule, {})["mem_mb"] = memory
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(profile))
    return folder


@pytest.fixture(scope="module")
def slurm_run(cluster, local_run, demo_gallery, s3_server, tmp_path_factory):
    """The same configuration submitted to the cluster (the local run started first); returns its results,
    Snakemake's output and slurmctld's jobs."""
    layout, root = demo_gallery
    plates, config = root / "plates.csv", _config(layout)
    results = tmp_path_factory.mktemp("on-slurm")
    profile = _test_profile(
        tmp_path_factory.mktemp("profile") / "slurm", cluster, _rule_names(), results / "slurm_logs"
    )
    assert "<" not in (profile / "config.yaml").read_text(), "a placeholder of profiles/slurm was left unfilled"
    result = run_snakemake(
        results,
        plates,
        s3_server.endpoint_url,
        "--profile",
        str(profile),
        "--max-threads",
        THREADS,
        config=config,
        env={"SLURM_CONF": str(SLURM_CONF)},
    )
    return results, result, cluster.jobs(), cluster.completed()


def _rule_of(job: dict[str, str]) -> str:
    """The rule a job ran: the plugin's comment is ``rule_<name>`` or ``rule_<name>_wildcards_<...>``."""
    return job["Comment"].removeprefix("rule_").split("_wildcards_")[0]


def test_every_job_went_through_sbatch_and_completed(slurm_run):
    """slurmctld ran exactly the jobs Snakemake counted (the target rule aside), and recorded each one's end."""
    _, result, jobs, completed = slurm_run
    expected = {rule: n for rule, n in job_counts(result).items() if rule not in LOCAL_RULES}
    assert expected and Counter(_rule_of(job) for job in jobs) == expected
    assert {job["JobState"] for job in jobs} == {"COMPLETED"} and {job["ExitCode"] for job in jobs} == {"0:0"}
    assert {job["Partition"] for job in jobs} == {PARTITION} and {job["Account"] for job in jobs} == {ACCOUNT}
    assert sorted(line["JobId"] for line in completed) == sorted(job["JobId"] for job in jobs)
    assert {line["JobState"] for line in completed} == {"COMPLETED"}


def test_the_gpu_rule_asked_slurm_for_a_gpu(slurm_run):
    """dino's ``gpu=1`` reached sbatch as a GPU request, scheduled on the node's one (placeholder) GPU; no other job asked."""
    _, _, jobs, _ = slurm_run
    requests: dict[str, set[str]] = {}
    for job in jobs:
        requests.setdefault(_rule_of(job), set()).add(job.get("TresPerJob", ""))
    assert requests.pop("dino") == {"gres:gpu:1"}
    assert requests and all(asked == {""} for asked in requests.values()), requests
    assert sum(_rule_of(job) == "dino" for job in jobs) == 2


def _tables(results: Path) -> dict[str, Path]:
    """Every data table of a run: per-plate stage outputs and the collection, by path under the results."""
    per_plate = [path for path in (results / "plates").rglob("*.parquet") if path.parent.name in DATA_TABLES]
    return {
        str(path.relative_to(results)): path for path in per_plate + sorted((results / "collection").rglob("*.parquet"))
    }


def test_outputs_equal_a_local_run(slurm_run, local_run):
    """The same tables with the same numbers (float tolerance), and the same correction chosen."""
    slurm_results, reference_results = slurm_run[0], local_run.result()
    ours, reference = _tables(slurm_results), _tables(reference_results)
    assert ours.keys() == reference.keys()
    assert any(name.startswith("plates/") and "/dino/" in name for name in ours)
    assert any(name.startswith("collection/cellprofiler/corrected/") for name in ours)
    for name, path in ours.items():
        pd.testing.assert_frame_equal(pd.read_parquet(path), pd.read_parquet(reference[name]), obj=name)
    for features in ("dino", "cellprofiler"):
        chosen = [
            json.loads((r / "collection" / features / "selected_method.json").read_text())
            for r in (slurm_results, reference_results)
        ]
        assert chosen[0] == chosen[1], features
    assert (slurm_results / "report" / "index.html").stat().st_size > 0
