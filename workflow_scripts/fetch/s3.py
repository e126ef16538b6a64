"""S3 access shared by every stage: clients, URLs and the keys a run accepts.

The public gallery allows unsigned requests, so anonymous access is the
default; a custom endpoint (a local server, another object store) comes from
the config or from the standard ``AWS_ENDPOINT_URL`` variable, which boto3
itself honours.

Keys come from files a run downloads (LoadData, listings), and the cache
mirrors them as local paths (:func:`workflow_scripts.paths.cache_path`). A key
that could name a file outside the cache once it is a path, or two keys
that would share one file, is refused when its :class:`S3Location` is made:
``..`` or ``.`` segments, a leading ``/``, empty segments, backslashes (a
separator on other systems), percent-encoded dots, slashes and backslashes
(which a later decoding step could turn into the same), and control
characters. Gallery keys contain none of these.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import boto3
from botocore import UNSIGNED
from botocore.config import Config

from workflow_scripts.errors import InputError

# Bucket names: letters, digits, dots, hyphens and (legacy) underscores, starting with a letter or digit.
_BUCKET = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_ENCODED_SEPARATOR = re.compile(r"%(2e|2f|5c)", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class HostileKeyError(InputError):
    """A bucket or key that could not be mirrored safely under the cache."""


def key_problem(key: str) -> str | None:
    """Why ``key`` cannot be mirrored as a path under the cache, or None when it can.

    A trailing ``/`` is allowed: it names a prefix to list, never a file.
    """
    if not key:
        return "empty key"
    if key.startswith("/"):
        return "absolute path"
    if "\\" in key:
        return "backslash"
    if _ENCODED_SEPARATOR.search(key):
        return "percent-encoded '.', '/' or '\\'"
    if _CONTROL.search(key):
        return "control character"
    segments = key.removesuffix("/").split("/")
    if any(segment in ("..", ".") for segment in segments):
        return "'.' or '..' segment"
    if "" in segments:
        return "empty segment ('//')"
    return None


@dataclass(frozen=True)
class S3Location:
    """A bucket and a key; ``str()`` gives the ``s3://`` URL.

    Refuses (:class:`HostileKeyError`) a bucket or key that the cache could
    not mirror safely (see the module docstring).
    """

    bucket: str
    key: str

    def __post_init__(self) -> None:
        if not _BUCKET.fullmatch(self.bucket):
            raise HostileKeyError(f"refusing bucket {self.bucket!r} (key {self.key!r}): not a bucket name")
        problem = key_problem(self.key)
        if problem:
            raise HostileKeyError(f"refusing key {self.key!r} in bucket {self.bucket}: {problem}")

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def parse_s3_url(url: str) -> S3Location:
    """Split ``s3://bucket/key`` into its parts; anything else, or a hostile key, is an error."""
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
    read_timeout: float = 60,
):
    """A boto3 S3 client; unsigned when ``anonymous``.

    Retries are left to the caller (one attempt per call: botocore's
    ``total_max_attempts=1``; its ``max_attempts`` would count retries) so
    that the fetch stage can count and log them and verify each body itself.
    A response that stalls for ``read_timeout`` seconds fails the attempt.
    An unsigned client never reads credentials, so none planted in the
    environment can leave the machine with a request.
    """
    config = Config(
        signature_version=UNSIGNED if anonymous else None,
        max_pool_connections=max_pool_connections,
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=10,
        read_timeout=read_timeout,
    )
    endpoint = endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None
    session = boto3.session.Session()
    region = session.region_name or "us-east-1"
    return session.client("s3", endpoint_url=endpoint, config=config, region_name=region)
