"""The fault proxy: faithful forwarding, each fault as S3 clients see it, reproducibility."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from urllib.parse import quote, urlsplit

import boto3
import pytest

from tests.support.faultproxy import FaultProxy, Faults
from workflow_scripts.fetch.s3 import make_client

BUCKET = "fault-proxy-test"
KEY = "images/plate 1/field.tiff"
BODY = os.urandom(200_000)


@pytest.fixture(scope="module")
def upstream(s3_server) -> str:
    admin = s3_server.admin_client()
    admin.create_bucket(Bucket=BUCKET, ACL="public-read")
    admin.put_object(Bucket=BUCKET, Key=KEY, Body=BODY, ACL="public-read")
    return s3_server.endpoint_url


def signed_client(endpoint: str):
    """A signed client (moto accepts any credentials), to send an upload through the proxy."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def raw_get(endpoint: str, method: str = "GET") -> http.client.HTTPResponse:
    """One request on a fresh connection, without any client-side handling."""
    parts = urlsplit(endpoint)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    conn.request(method, f"/{BUCKET}/{quote(KEY)}")
    return conn.getresponse()


def outcome(endpoint: str) -> str:
    """What a client sees of one GET: the status, a cut body, or a dropped connection."""
    try:
        response = raw_get(endpoint)
        body = response.read()
    except http.client.IncompleteRead:
        return "truncated"
    except (ConnectionError, http.client.RemoteDisconnected):
        return "dropped"
    return f"{response.status}" if body == BODY or response.status != 200 else "corrupted"


def test_forwards_range_query_head_and_uploads(upstream):
    with FaultProxy(upstream) as proxy:
        client = make_client(proxy.endpoint_url, anonymous=True)
        part = client.get_object(Bucket=BUCKET, Key=KEY, Range="bytes=1000-1999")
        assert part["ResponseMetadata"]["HTTPStatusCode"] == 206
        assert part["Body"].read() == BODY[1000:2000]
        listed = client.list_objects_v2(Bucket=BUCKET, Prefix="images/plate 1/")
        assert [item["Key"] for item in listed["Contents"]] == [KEY]
        assert client.head_object(Bucket=BUCKET, Key=KEY)["ContentLength"] == len(BODY)
        signed_client(proxy.endpoint_url).put_object(
            Bucket=BUCKET, Key="uploaded.bin", Body=BODY[:5000], ACL="public-read"
        )
        assert client.get_object(Bucket=BUCKET, Key="uploaded.bin")["Body"].read() == BODY[:5000]
        assert proxy.counts == {"requests": 5, "GET": 3, "HEAD": 1, "PUT": 1}


def test_throttling_and_internal_errors_are_s3_error_documents(upstream):
    for kind, status, code in [("slowdown", 503, "SlowDown"), ("internal_error", 500, "InternalError")]:
        with FaultProxy(upstream, Faults(**{kind: 1.0})) as proxy:
            response = raw_get(proxy.endpoint_url)
            assert response.status == status
            assert ET.fromstring(response.read()).findtext("Code") == code


def test_truncated_body_keeps_the_full_content_length(upstream):
    with FaultProxy(upstream, Faults(truncate=1.0)) as proxy:
        response = raw_get(proxy.endpoint_url)
        assert int(response.getheader("Content-Length")) == len(BODY)
        with pytest.raises(http.client.IncompleteRead) as raised:
            response.read()
    assert BODY.startswith(raised.value.partial) and len(raised.value.partial) < len(BODY)


def test_reset_and_corrupt(upstream):
    with FaultProxy(upstream, Faults(reset=1.0)) as proxy:
        assert outcome(proxy.endpoint_url) == "dropped"
    with FaultProxy(upstream, Faults(corrupt=1.0)) as proxy:
        response = raw_get(proxy.endpoint_url)
        body = response.read()
    assert len(body) == len(BODY) and sum(a != b for a, b in zip(body, BODY)) == 1


def test_faults_follow_the_seed_and_the_fractions(upstream):
    faults = Faults(slowdown=0.2, internal_error=0.1, reset=0.1, truncate=0.1, corrupt=0.1, seed=11)

    def sequence(plan: Faults) -> list[str]:
        with FaultProxy(upstream, plan) as proxy:
            return [outcome(proxy.endpoint_url) for _ in range(150)]

    first = sequence(faults)
    assert sequence(faults) == first
    assert sequence(Faults(**{**faults.__dict__, "seed": 12})) != first
    shares = {kind: first.count(kind) / len(first) for kind in set(first)}
    expected = {"503": 0.2, "500": 0.1, "dropped": 0.1, "truncated": 0.1, "corrupted": 0.1, "200": 0.4}
    assert shares.keys() == expected.keys()
    assert all(abs(shares[kind] - share) < 0.1 for kind, share in expected.items()), shares


def test_latency_is_added_to_every_request(upstream):
    with FaultProxy(upstream, Faults(latency=0.2)) as proxy:
        started = time.perf_counter()
        assert outcome(proxy.endpoint_url) == "200"
        assert time.perf_counter() - started >= 0.2


def test_fractions_must_be_valid():
    with pytest.raises(ValueError, match="add up"):
        Faults(slowdown=0.6, reset=0.5)
    with pytest.raises(ValueError, match="latency"):
        Faults(latency=-1)


def test_command_line_serves_until_stopped(upstream):
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.faultproxy", "--upstream", upstream, "--internal-error", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        endpoint = process.stdout.readline().strip()
        assert outcome(endpoint) == "500"
    finally:
        process.terminate()
        process.wait(timeout=10)
