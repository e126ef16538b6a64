"""AWS Batch on loopback: moto's Batch, IAM and S3 served by one moto server
process, set up as a site sets up its account, and what a run registered and
submitted there.

moto runs Batch jobs without Docker once told so (``use_docker: false``): a
job is marked SUCCEEDED at submission and runs nothing. What these helpers
check is therefore what the executor sends to AWS: job definitions (image,
vCPUs, memory, GPUs, environment, timeout) and submitted jobs (command).
"""

from __future__ import annotations

import json
import re
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import boto3
import yaml

from tests.support.workflow import REPO, snakemake_command, venv_environment

PROFILE = REPO / "profiles" / "aws-batch"
REGION = "us-east-1"
# moto accepts any credentials; these are the "user's" keys in a run.
_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
_TRUST = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "ecs-tasks.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
)
_JOB_STATUSES = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED", "FAILED")


@dataclass(frozen=True)
class BatchSite:
    """A moto account with what the profile's variables point at: a job queue, a job role, a bucket."""

    endpoint_url: str
    job_queue: str
    job_role: str
    bucket: str

    def client(self, service: str):
        """A signed client of ``service`` on the moto server."""
        return boto3.client(service, endpoint_url=self.endpoint_url, region_name=REGION, **_CREDENTIALS)

    def environment(self, prefix: str) -> dict[str, str]:
        """The variables the aws-batch profile reads, but the image, and where boto3 finds the server.

        ``AWS_ENDPOINT_URL`` sends the executor's Batch client and the S3
        storage plugin (neither takes an endpoint from the profile) to moto.
        """
        return {
            "AWS_REGION": REGION,
            "AWS_BATCH_JOB_QUEUE": self.job_queue,
            "AWS_BATCH_JOB_ROLE": self.job_role,
            "RESULTS_S3_PREFIX": f"s3://{self.bucket}/{prefix}",
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": _CREDENTIALS["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": _CREDENTIALS["aws_secret_access_key"],
        }

    def stage(self, prefix: str, objects: dict[str, bytes]) -> None:
        """Put ``objects`` (paths relative to the workdir) under the storage prefix, as a finished job would."""
        s3 = self.client("s3")
        for path, body in objects.items():
            s3.put_object(Bucket=self.bucket, Key=f"{prefix}/{path}", Body=body)

    def job_definitions(self) -> list[dict]:
        """Every job definition registered, including those the executor deregistered after the job."""
        return self.client("batch").describe_job_definitions()["jobDefinitions"]

    def jobs(self) -> list[dict]:
        """Every job submitted to the queue, described."""
        batch = self.client("batch")
        ids = [
            summary["jobId"]
            for status in _JOB_STATUSES
            for summary in batch.list_jobs(jobQueue=self.job_queue, jobStatus=status)["jobSummaryList"]
        ]
        return batch.describe_jobs(jobs=ids)["jobs"] if ids else []


def create_site(endpoint_url: str, bucket: str) -> BatchSite:
    """Set up moto as a user sets up AWS for the profile: roles, a compute environment, a queue, a bucket.

    Batch jobs are switched to moto's Docker-free mode first.
    """
    request = urllib.request.Request(
        f"{endpoint_url}/moto-api/config",
        data=json.dumps({"batch": {"use_docker": False}}).encode(),
        method="POST",
    )
    urllib.request.urlopen(request, timeout=10).close()
    site = BatchSite(endpoint_url, "", "", bucket)
    iam = site.client("iam")
    roles = {
        name: iam.create_role(RoleName=name, AssumeRolePolicyDocument=_TRUST)["Role"]["Arn"]
        for name in ("batch-service", "cellpainting-jobs")
    }
    batch = site.client("batch")
    environment = batch.create_compute_environment(
        computeEnvironmentName="cellpainting", type="UNMANAGED", state="ENABLED", serviceRole=roles["batch-service"]
    )["computeEnvironmentArn"]
    queue = batch.create_job_queue(
        jobQueueName="cellpainting",
        state="ENABLED",
        priority=1,
        computeEnvironmentOrder=[{"order": 1, "computeEnvironment": environment}],
    )["jobQueueArn"]
    site.client("s3").create_bucket(Bucket=bucket)
    return BatchSite(endpoint_url, queue, roles["cellpainting-jobs"], bucket)


def run_batch(
    workdir: Path,
    site: BatchSite,
    prefix: str,
    image: str | None,
    *args: str,
    config: dict,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """The workflow on config/demo.yaml + ``config`` through profiles/aws-batch, in a subprocess.

    Run as the README runs it: the profile and its variables (``image`` None
    leaves AWS_BATCH_IMAGE unset), no ``--cores`` (which would cap every job's
    threads, hence its vCPUs). ``env`` comes last, so a test may plant
    variables a user could have set.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    overrides = workdir / "overrides.yaml"
    overrides.write_text(yaml.safe_dump(config))
    command = snakemake_command([REPO / "config" / "demo.yaml", overrides], workdir, "--profile", str(PROFILE), *args)
    environment = {**venv_environment(), **site.environment(prefix), "AWS_BATCH_IMAGE": image, **(env or {})}
    if image is None:
        del environment["AWS_BATCH_IMAGE"]
    return subprocess.run(command, check=False, cwd=REPO, capture_output=True, text=True, env=environment)


def dry_run_jobs(output: str) -> list[dict]:
    """The jobs a dry run with ``--printshellcmds`` would submit: rule, wildcards, threads and resources of each.

    Local rules and rules without a command (``all``) never leave the main
    process; members of a group job are listed one by one, indented.
    Snakemake prints a job's ``threads:`` only when more than one.
    """
    jobs = []
    for block in re.split(r"\n[ ]*(?=(?:local)?rule \w+:\n)", output)[1:]:
        if block.startswith("localrule") or not re.search(r"^Shell command: (?!None$)", block, flags=re.MULTILINE):
            continue
        fields = dict(re.findall(r"^[ ]+(\w+): (.*)$", block, flags=re.MULTILINE))
        resources = dict(item.split("=", 1) for item in fields["resources"].split(", "))
        rule = re.match(r"rule (\w+):", block).group(1)
        jobs.append(
            {
                "rule": rule,
                "wildcards": fields.get("wildcards", ""),
                "threads": int(fields.get("threads", 1)),
                **resources,
            }
        )
    return jobs
