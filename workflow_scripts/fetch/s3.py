"""S3 access shared by every stage: clients and URL handling.

The public gallery allows unsigned requests, so anonymous access is the
default; a custom endpoint (a local server, another object store) comes from
the config or from the standard ``AWS_ENDPOINT_URL`` variable, which boto3
itself honours.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import boto3
from botocore import UNSIGNED
from botocore.config import Config

from workflow_scripts.errors import InputError


@dataclass(frozen=True)
class S3Location:
    """A bucket and a key; ``str()`` gives the ``s3://`` URL."""

    bucket: str
    key: str

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def parse_s3_url(url: str) -> S3Location:
    """Split ``s3://bucket/key`` into its parts; anything else is an error."""
    if not url.startswith("s3://"):
        raise InputError(f"not an s3:// URL: {url!r}")
    bucket, _, key = url[len("s3://") :].partition("/")
    if not bucket or not key:
        raise InputError(f"s3:// URL without bucket or key: {url!r}")
    return S3Location(bucket, key)


def make_client(
    endpoint_url: str | None = None,
    anonymous: bool = True,
    max_pool_connections: int = 64,
):
    """A boto3 S3 client; unsigned when ``anonymous``.

    Retries are left to the caller (one attempt per call: botocore's
    ``total_max_attempts=1``; its ``max_attempts`` would count retries) so
    that the fetch stage can count and log them and verify each body itself.
    """
    config = Config(
        signature_version=UNSIGNED if anonymous else None,
        max_pool_connections=max_pool_connections,
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=10,
        read_timeout=60,
    )
    endpoint = endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None
    session = boto3.session.Session()
    region = session.region_name or "us-east-1"
    return session.client("s3", endpoint_url=endpoint, config=config, region_name=region)
