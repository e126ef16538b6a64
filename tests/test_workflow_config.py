"""Config validation, lint and dry-runs with every cluster profile."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.support.workflow import REPO, run_snakemake

pytestmark = pytest.mark.workflow


def test_lint_is_clean(demo_gallery, s3_server, tmp_path):
    layout, root = demo_gallery
    result = run_snakemake(tmp_path, root / "plates.csv", s3_server.endpoint_url, "--lint")
    assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ({"fetch": {"concurrency": "many"}}, r"config key fetch.concurrency: 'many' is not of type 'integer'"),
        ({"fetch": {"concurency": 4}}, r"config key fetch.concurency is not a known key \(did you mean fetch.concurrency\?\)"),
        ({"sample": {"wells": ["Z99"]}}, r"config key sample.wells.0: 'Z99' does not match"),
        ({"convert": {"ngff_version": "0.3"}}, r"config key convert.ngff_version: '0.3' is not one of"),
    ],
)
def test_bad_config_fails_before_any_job_and_names_the_key(demo_gallery, s3_server, tmp_path, override, named):
    layout, root = demo_gallery
    result = run_snakemake(tmp_path, root / "plates.csv", s3_server.endpoint_url, config=override, check=False)
    assert result.returncode != 0
    assert re.search(named, result.stdout + result.stderr)
    assert not (tmp_path / "plates").exists()


def test_embeddings_without_checkpoint_fail_before_any_job(demo_gallery, s3_server, tmp_path):
    layout, root = demo_gallery
    config = {"embedding": {"allow_random_weights": False}}
    result = run_snakemake(tmp_path, root / "plates.csv", s3_server.endpoint_url, config=config, check=False)
    assert result.returncode != 0 and "embedding.checkpoint is not set" in result.stderr
    assert not (tmp_path / "plates").exists()


def test_unknown_plate_in_selection_is_named(demo_gallery, s3_server, tmp_path):
    layout, root = demo_gallery
    result = run_snakemake(
        tmp_path, root / "plates.csv", s3_server.endpoint_url, config={"select": {"plates": ["NOPE42"]}}, check=False
    )
    assert result.returncode != 0 and "NOPE42" in result.stderr


def _dry_run(profile: str, root: Path, results: Path, endpoint: str, *extra: str) -> subprocess.CompletedProcess:
    return run_snakemake(results, root / "plates.csv", endpoint, "--dry-run", "--profile", str(REPO / "profiles" / profile), *extra)


def _dino_resources(stdout: str) -> str:
    """The resources line of the first dino job of a dry-run."""
    job = stdout[stdout.index("rule dino:"):]
    return next(line for line in job.splitlines() if line.strip().startswith("resources:"))


def test_local_and_slurm_profiles_dry_run(demo_gallery, s3_server, tmp_path):
    layout, root = demo_gallery
    for profile in ("local", "slurm"):
        result = _dry_run(profile, root, tmp_path / profile, s3_server.endpoint_url)
        assert "rule fetch:" in result.stdout
        assert "gpu=1" in _dino_resources(result.stdout)


AWS_SITE = {
    "AWS_REGION": "us-east-1",
    "AWS_BATCH_JOB_QUEUE": "arn:aws:batch:us-east-1:000000000000:job-queue/test",
    "AWS_BATCH_JOB_ROLE": "arn:aws:iam::000000000000:role/test",
    "RESULTS_S3_PREFIX": "s3://results-bucket/run",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
}


def test_aws_batch_profile_dry_run(demo_gallery, s3_server, tmp_path):
    """As shipped, with the site's values in the environment the profile names."""
    layout, root = demo_gallery
    s3_server.admin_client().create_bucket(Bucket="results-bucket")
    result = run_snakemake(
        tmp_path, root / "plates.csv", s3_server.endpoint_url,
        "--dry-run", "--profile", str(REPO / "profiles" / "aws-batch"),
        "--storage-s3-endpoint-url", s3_server.endpoint_url,
        env=AWS_SITE,
    )
    assert "rule fetch:" in result.stdout
    assert "_gpus=1" in _dino_resources(result.stdout)


def test_aws_batch_profile_names_the_variable_to_set(demo_gallery, s3_server, tmp_path, monkeypatch):
    layout, root = demo_gallery
    monkeypatch.delenv("RESULTS_S3_PREFIX", raising=False)  # the jobs' environment is this one plus `env`
    site = {k: v for k, v in AWS_SITE.items() if k != "RESULTS_S3_PREFIX"}
    result = run_snakemake(
        tmp_path, root / "plates.csv", s3_server.endpoint_url,
        "--dry-run", "--profile", str(REPO / "profiles" / "aws-batch"), env=site, check=False,
    )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "set the environment variable(s) RESULTS_S3_PREFIX" in output
    assert "botocore" not in output


def test_a_config_without_checkpoint_plans_and_fetches(demo_gallery, s3_server, tmp_path):
    """Only plates, dataset and gallery, as a new user writes it: plan and fetch need no model."""
    layout, root = demo_gallery
    minimal = {"dataset": layout.dataset}
    run_snakemake(tmp_path, root / "plates.csv", s3_server.endpoint_url, "plan", config=minimal, base=None)
    table = (tmp_path / "fetch_plan.tsv").read_text()
    assert all(plate.plate in table for plate in layout.plates), table
    fetch = run_snakemake(
        tmp_path, root / "plates.csv", s3_server.endpoint_url, "fetched", "--dry-run", config=minimal, base=None,
    )
    assert "rule fetch:" in fetch.stdout and "rule omezarr:" not in fetch.stdout
    assert "rule dino:" not in fetch.stdout

    everything = run_snakemake(tmp_path, root / "plates.csv", s3_server.endpoint_url, config=minimal, base=None, check=False)
    assert everything.returncode != 0
    assert "config key embedding.checkpoint is not set" in everything.stderr
    assert not (tmp_path / "plates" / layout.dataset / layout.plates[0].source / layout.plates[0].batch
                / layout.plates[0].plate / "load_data.parquet").exists()


def test_profiles_request_gpus_and_timeouts():
    aws = (REPO / "profiles" / "aws-batch" / "config.yaml").read_text()
    timeout = int(re.search(r"aws-batch-task-timeout:\s*(\d+)", aws).group(1))
    assert timeout > 300
