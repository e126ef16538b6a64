"""profiles/aws-batch for real: Snakemake submits through the AWS Batch executor plugin to moto's
Batch, IAM and S3 on loopback, and what it registered and submitted is read back.

moto marks Batch jobs SUCCEEDED without running them, so a run submits the
jobs whose inputs exist and then fails on their missing outputs. One run
submits two: the embedding job of a plate whose OME-Zarr and QC table are
staged under the storage prefix first, and the first job of a plate with
nothing staged (fetch, omezarr and qc, grouped by the profile).
"""

from __future__ import annotations

import json
import logging
import subprocess
from pathlib import Path
from typing import NamedTuple

import pytest
import yaml
from snakemake_executor_plugin_aws_batch.batch_job_builder import BatchJobBuilder

from tests.support.batch import PROFILE, BatchSite, create_site, dry_run_jobs, run_batch
from tests.support.workflow import plate_dir, run_snakemake
from workflow_scripts.demo.s3server import S3Server

pytestmark = pytest.mark.workflow

BUCKET = "cellpainting-results"
PREFIX = "run"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/cellpainting:gpu"
DATASET = "cpg-demo"  # config/demo.yaml's
STAGED = ("source_1", "2024_01_01_Batch1", "P1")
NEW = ("source_1", "2024_01_01_Batch1", "P2")
RESULTS = "results"
# Every stage in the DAG of `all`, one correction method to keep it small.
EVERY_STAGE = {"results_dir": RESULTS, "correction": {"methods": ["none"]}}
# Large enough that no rule's threads are capped, as in a run without --cores.
UNCAPPED = "1024"
# The user's own credentials, as boto3 reads them: they must stay with the user.
USER_CREDENTIALS = {"AWS_SECRET_ACCESS_KEY": "planted-aws-secret-0c1d", "AWS_SESSION_TOKEN": "planted-aws-token-7e2f"}


class Submission(NamedTuple):
    site: BatchSite
    result: subprocess.CompletedProcess
    definitions: list[dict]
    jobs: list[dict]

    def definition(self, rules: str) -> dict:
        """The one definition registered for a job of ``rules`` (a group job's name joins its rules)."""
        (found,) = [d for d in self.definitions if d["jobDefinitionName"].startswith(f"snakejob-def-{rules}-")]
        return found


@pytest.fixture(scope="module")
def plates(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("plates") / "plates.csv"
    rows = [",".join(plate) for plate in (STAGED, NEW)]
    path.write_text("\n".join(["Metadata_Source,Metadata_Batch,Metadata_Plate", *rows]) + "\n")
    return path


def submit(workdir: Path, plates: Path, image: str | None, *args: str, env: dict[str, str]) -> Submission:
    """A run for one plate's embeddings (their inputs staged) and another's QC, on a Batch site of its own."""
    staged, new = plate_dir(RESULTS, DATASET, *STAGED), plate_dir(RESULTS, DATASET, *NEW)
    targets = [f"{staged}/dino/wells.parquet", f"{new}/qc/fields.parquet"]
    with S3Server() as server:
        site = create_site(server.endpoint_url, BUCKET)
        site.stage(PREFIX, {f"{staged}/{STAGED[-1]}.ome.zarr/zarr.json": b"{}", f"{staged}/qc/fields.parquet": b""})
        config = {"results_dir": RESULTS, "plates": str(plates), "features": ["dino"]}
        # moto's jobs write nothing: a retry would only register the same job again.
        result = run_batch(workdir, site, PREFIX, image, *targets, "--retries", "0", *args, config=config, env=env)
        return Submission(site, result, site.job_definitions(), site.jobs())


@pytest.fixture(scope="module")
def batch(plates, tmp_path_factory) -> Submission:
    submission = submit(tmp_path_factory.mktemp("batch"), plates, IMAGE, env=USER_CREDENTIALS)
    assert len(submission.jobs) == 2, submission.result.stderr[-3000:]
    return submission


def by_job(jobs: list[dict]) -> dict[tuple[str, str], dict]:
    return {(job["rule"], job["wildcards"]): job for job in jobs}


@pytest.fixture(scope="module")
def asked(plates, tmp_path_factory) -> dict[tuple[str, str], dict]:
    """Every job of the workflow with the threads and memory its rule asks, without the profile."""
    workdir = tmp_path_factory.mktemp("asked")
    no_gallery = "http://127.0.0.1:9"  # a dry run reads nothing from the gallery
    result = run_snakemake(workdir, plates, no_gallery, "-n", "-p", "--cores", UNCAPPED, config=EVERY_STAGE)
    return by_job(dry_run_jobs(result.stdout))


@pytest.fixture(scope="module")
def shaped(plates, tmp_path_factory) -> dict[tuple[str, str], dict]:
    """The same jobs as the profile shapes them for the executor."""
    with S3Server() as server:
        site = create_site(server.endpoint_url, BUCKET)
        config = {**EVERY_STAGE, "plates": str(plates)}
        workdir = tmp_path_factory.mktemp("shaped")
        result = run_batch(workdir, site, PREFIX, IMAGE, "-n", "--cores", UNCAPPED, config=config)
    assert result.returncode == 0, result.stderr[-3000:]
    return by_job(dry_run_jobs(result.stdout))


def plate_jobs(jobs: dict[tuple[str, str], dict], rules: list[str], plate: tuple[str, str, str]) -> list[dict]:
    wildcards = "dataset={}, source={}, batch={}, plate={}".format(DATASET, *plate)
    return [jobs[rule, wildcards] for rule in rules]


def registered(threads: int, mem_mb: int) -> tuple[int, int]:
    """The vCPUs and MiB the executor registers for a job of these threads and mem_mb: the plugin's own code."""
    builder = BatchJobBuilder(logging.getLogger(__name__), None, {}, IMAGE, None, "", None)
    vcpus, memory = builder._validate_resources(str(threads), str(mem_mb))
    return int(vcpus), int(memory)


def requirements(definition: dict) -> dict[str, int]:
    return {item["type"]: int(item["value"]) for item in definition["containerProperties"]["resourceRequirements"]}


def test_jobs_run_in_the_workflows_image(batch):
    assert [definition["containerProperties"]["image"] for definition in batch.definitions] == [IMAGE, IMAGE]


def test_embedding_job_gets_a_gpu_its_threads_and_at_least_its_memory(batch, asked, shaped):
    (rule,), (shape,) = plate_jobs(asked, ["dino"], STAGED), plate_jobs(shaped, ["dino"], STAGED)
    assert requirements(batch.definition("dino")) == {"GPU": 1, "VCPU": rule["threads"], "MEMORY": int(shape["mem_mb"])}
    assert int(shape["mem_mb"]) >= int(rule["mem_mb"])


def test_a_plate_is_fetched_converted_and_checked_in_one_cpu_job(batch, asked):
    """fetch leaves the images in the job's local cache for omezarr: they must share a container."""
    members = ["fetch", "omezarr", "qc"]
    definition = batch.definition("plate_" + "_".join(members))
    command = definition["containerProperties"]["command"][-1]
    assert all(
        f"'{rule}:dataset={DATASET},source={NEW[0]},batch={NEW[1]},plate={NEW[2]}'" in command for rule in members
    )
    rules = plate_jobs(asked, members, NEW)
    assert requirements(definition)["VCPU"] == max(rule["threads"] for rule in rules)
    assert requirements(definition)["MEMORY"] >= max(int(rule["mem_mb"]) for rule in rules)
    assert "GPU" not in requirements(definition)


def test_every_job_registers_at_least_the_memory_its_rule_asks(asked, shaped):
    """No rounding by the plugin (which would go down), for every job of every stage."""
    assert shaped.keys() == asked.keys()
    assert {rule for rule, _ in asked} >= {"fetch", "omezarr", "qc", "dino", "cellprofiler", "report"}
    for key, rule in asked.items():
        shape = shaped[key]
        assert shape["threads"] == rule["threads"], rule["rule"]
        vcpus, memory = registered(shape["threads"], int(shape["mem_mb"]))
        assert (vcpus, memory) == (shape["threads"], int(shape["mem_mb"])), f"{rule['rule']}: the plugin rounds"
        assert memory >= int(rule.get("mem_mb", 0)), rule["rule"]  # a rule that asks none gets the default


def test_jobs_get_the_profiles_timeout_and_the_job_role(batch):
    profile = yaml.safe_load((PROFILE / "config.yaml").read_text())
    for definition in batch.definitions:
        assert definition["timeout"] == {"attemptDurationSeconds": profile["aws-batch-task-timeout"]}
        assert definition["containerProperties"]["jobRoleArn"] == batch.site.job_role


def test_jobs_read_and_write_under_the_results_prefix(batch):
    prefix = f"s3://{BUCKET}/{PREFIX}"
    for job in batch.jobs:
        command = job["container"]["command"][-1]
        assert f"--default-storage-prefix '{prefix}'" in command
        assert f"--deploy-sources {prefix}/snakemake-workflow-sources." in command


def test_no_credential_of_the_user_reaches_a_job(batch):
    everything = json.dumps([batch.definitions, batch.jobs])
    assert not [value for value in USER_CREDENTIALS.values() if value in everything]
    for definition in batch.definitions:
        names = {item["name"] for item in definition["containerProperties"]["environment"]}
        assert names <= {"SNAKEMAKE_STORAGE_S3_REGION"}


@pytest.mark.parametrize(
    ("image", "args", "env", "named"),
    [
        pytest.param(
            IMAGE,
            ("--storage-s3-access-key", "planted-storage-key-3c8d"),
            {"SNAKEMAKE_STORAGE_S3_SECRET_KEY": "planted-storage-secret-5a9b"},
            "--storage-s3-access-key, --storage-s3-secret-key",
            id="storage-credentials",
        ),
        pytest.param(None, (), {}, "set the environment variable(s) AWS_BATCH_IMAGE", id="image-unset"),
    ],
)
def test_a_run_that_would_leak_or_lack_its_image_stops_before_any_job(plates, tmp_path, image, args, env, named):
    """Storage settings travel with every job in clear (as the job definition's environment): refused."""
    submission = submit(tmp_path, plates, image, *args, env=env)
    assert [job["jobName"] for job in submission.jobs] == [], "jobs were submitted"
    assert submission.definitions == []
    assert submission.result.returncode != 0 and named in submission.result.stderr, submission.result.stderr[-2000:]
