"""The download engine against a real S3 server, directly and through the fault proxy."""

from __future__ import annotations

import hashlib
import logging
import math
import os
import tempfile
from pathlib import Path

import pytest
from boto3.s3.transfer import TransferConfig

from tests.support.faultproxy import FAULT_KINDS, FaultProxy, Faults
from workflow_scripts.demo.s3server import free_port
from workflow_scripts.fetch.objects import (
    FetchError,
    MissingObjectError,
    ObjectRecord,
    RetryPolicy,
    download_objects,
    head_objects,
    list_objects,
    partial_path,
    retries_logged,
    sidecar_path,
)
from workflow_scripts.fetch.s3 import S3Location, make_client
from workflow_scripts.paths import cache_path

BUCKET = "fetch-objects-test"
MIB = 1024 * 1024
# Tiny backoff: tests check how often requests are repeated, not how long the pauses are.
FAST = RetryPolicy(max_attempts=40, base_delay=0.001, max_delay=0.01)
MULTIPART = S3Location(BUCKET, "source_4/images/big multipart.tiff")
WITH_CRC = S3Location(BUCKET, "source_4/images/uploaded-with-crc32.tiff")
# Threshold of the managed-transfer path in tests: a few objects lie above it.
LARGE = 256 * 1024


@pytest.fixture(scope="module")
def objects(s3_server) -> dict[S3Location, bytes]:
    """Objects as the gallery holds them: varied sizes, spaces in folder names.

    Most are uploaded without the newer flexible checksums, like the
    gallery's, so that the ETag is their only checksum; one big object is a
    multipart upload (an ETag that is not an MD5), one carries a CRC32.
    """
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required")
        plain = s3_server.admin_client()
    plain.create_bucket(Bucket=BUCKET, ACL="public-read")
    sizes = [0, 1, 4096, 65_536 + 13, 1_000_003] + [1_000 * (i + 1) for i in range(20)]
    data = {
        S3Location(BUCKET, f"source_3/images/plate 1/Images/r{i:02d}c01f01p01-ch1.tiff"): os.urandom(size)
        for i, size in enumerate(sizes)
    }
    for location, body in data.items():
        plain.put_object(Bucket=BUCKET, Key=location.key, Body=body, ACL="public-read")
    data[MULTIPART] = os.urandom(9 * MIB + 5)
    with tempfile.NamedTemporaryFile() as file:
        file.write(data[MULTIPART])
        file.flush()
        plain.upload_file(
            file.name,
            BUCKET,
            MULTIPART.key,
            ExtraArgs={"ACL": "public-read"},
            Config=TransferConfig(multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB),
        )
    data[WITH_CRC] = os.urandom(300_000)
    s3_server.admin_client().put_object(
        Bucket=BUCKET, Key=WITH_CRC.key, Body=data[WITH_CRC], ACL="public-read", ChecksumAlgorithm="CRC32"
    )
    return data


def assert_identical(records: list[ObjectRecord], objects: dict[S3Location, bytes], cache_dir: Path) -> None:
    assert [r.location for r in records] == list(objects)
    for record in records:
        body = objects[record.location]
        assert record.path == cache_path(cache_dir, record.bucket, record.key)
        assert record.size == len(body)
        assert record.path.read_bytes() == body, record.key


def test_downloads_are_byte_identical_with_s3_etags(s3_server, objects, tmp_path):
    client = make_client(s3_server.endpoint_url, anonymous=True)
    records = download_objects(client, list(objects), tmp_path, concurrency=8)
    assert_identical(records, objects, tmp_path)
    etags = {r.location: r.etag for r in records}
    assert etags[MULTIPART].endswith("-2")
    single_part = [loc for loc in objects if loc != MULTIPART]
    assert all(etags[loc] == hashlib.md5(objects[loc]).hexdigest() for loc in single_part)
    assert list(tmp_path.rglob("*.part")) == []


def test_head_objects_plans_sizes_in_order_without_writing(s3_server, objects, tmp_path):
    client = make_client(s3_server.endpoint_url, anonymous=True)
    plan = head_objects(client, list(objects), concurrency=8)
    assert [(r.location, r.size, r.path) for r in plan] == [(loc, len(body), None) for loc, body in objects.items()]
    assert not any(tmp_path.iterdir())
    records = download_objects(client, plan, tmp_path, concurrency=8)
    assert [r.etag for r in records] == [r.etag for r in plan]


def test_rerun_requests_nothing_and_duplicates_are_fetched_once(s3_server, objects, tmp_path):
    locations = list(objects)
    with FaultProxy(s3_server.endpoint_url) as proxy:
        client = make_client(proxy.endpoint_url, anonymous=True)
        first = download_objects(client, locations + locations[:3], tmp_path, concurrency=8)
        assert proxy.counts["GET"] == len(objects)
        assert first[-3:] == first[:3]
        again = download_objects(client, locations, tmp_path, concurrency=8)
        assert proxy.counts["requests"] == len(objects)
    assert again == first[: len(objects)]


def test_leftover_partial_and_unrecorded_files_are_not_trusted(s3_server, objects, tmp_path):
    """A killed run leaves partial files, or a renamed file without its record."""
    looks_complete, garbage, unrecorded = list(objects)[3:6]
    for location, content in [(looks_complete, objects[looks_complete]), (garbage, b"\0" * 10)]:
        path = cache_path(tmp_path, location.bucket, location.key)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial_path(path).write_bytes(content)
    cache_path(tmp_path, unrecorded.bucket, unrecorded.key).write_bytes(objects[unrecorded])
    with FaultProxy(s3_server.endpoint_url) as proxy:
        client = make_client(proxy.endpoint_url, anonymous=True)
        records = download_objects(client, list(objects), tmp_path, concurrency=8)
        assert proxy.counts["GET"] == len(objects)
    assert_identical(records, objects, tmp_path)
    assert list(tmp_path.rglob("*.part")) == []


def test_damaged_final_files_are_downloaded_again(s3_server, objects, tmp_path):
    client = make_client(s3_server.endpoint_url, anonymous=True)
    records = download_objects(client, list(objects), tmp_path, concurrency=8)
    truncated, zero_filled, record_lost, record_torn = records[4], records[-1], records[-2], records[-3]
    with open(truncated.path, "r+b") as file:
        file.truncate(truncated.size // 2)
    with open(zero_filled.path, "r+b") as file:
        file.write(b"\0" * zero_filled.size)
    sidecar_path(record_lost.path).unlink()
    torn = sidecar_path(record_torn.path)
    torn.write_text(torn.read_text()[:-1])
    with FaultProxy(s3_server.endpoint_url) as proxy:
        client = make_client(proxy.endpoint_url, anonymous=True)
        again = download_objects(client, list(objects), tmp_path, concurrency=8)
        assert proxy.counts["GET"] == 4
    assert_identical(again, objects, tmp_path)


def test_survives_throttling_errors_resets_and_truncated_bodies(s3_server, objects, tmp_path):
    faults = Faults(slowdown=0.08, internal_error=0.08, reset=0.07, truncate=0.07, seed=3)
    with FaultProxy(s3_server.endpoint_url, faults) as proxy:
        client = make_client(proxy.endpoint_url, anonymous=True)
        plan = head_objects(client, list(objects), concurrency=4, retry=FAST)
        records = download_objects(client, plan, tmp_path, concurrency=4, retry=FAST)
        assert all(proxy.counts[kind] > 0 for kind in ("slowdown", "internal_error", "reset", "truncate")), proxy.counts
    assert [r.size for r in plan] == [len(body) for body in objects.values()]
    assert_identical(records, objects, tmp_path)


def test_stalls_time_out_and_every_fault_is_one_retry_counted_and_logged(s3_server, objects, tmp_path, caplog):
    """A response that stalls past the read timeout is retried like any other fault; the tally, and the
    line it logs, count exactly the faults the proxy injected, per object."""
    checked = {loc: body for loc, body in objects.items() if loc != MULTIPART}  # a corrupt body needs a checksum
    stalled = list(checked)[2]
    faults = Faults(
        slowdown=0.05, internal_error=0.05, reset=0.05, truncate=0.05, corrupt=0.05, slow=0.05,
        slow_seconds=2.5, seed=4, first_hits=((stalled.key, "slow"),),
    )  # fmt: skip
    with FaultProxy(s3_server.endpoint_url, faults) as proxy, caplog.at_level(logging.INFO):
        client = make_client(proxy.endpoint_url, anonymous=True, read_timeout=1)
        with retries_logged("test objects", FAST) as tally:
            records = download_objects(client, list(checked), tmp_path, concurrency=8, retry=FAST)
        injected = sum(proxy.counts[kind] for kind in FAULT_KINDS)
    assert_identical(records, checked, tmp_path)
    assert proxy.counts["slow"] >= 1 and tally.per_object[stalled] >= 1
    assert any("ReadTimeoutError" in r.getMessage() and stalled.key in r.getMessage() for r in caplog.records)
    assert tally.total == injected
    assert sorted(tally.per_object.values()) == sorted(proxy.faults_by_path.values())
    line = f"test objects: {injected} retries over {len(tally.per_object)} objects, at most {tally.most} for one object"
    assert f"{line} (max_attempts {FAST.max_attempts})" in caplog.text


def test_listing_survives_faults_and_follows_continuation(s3_server, objects):
    prefix = S3Location(BUCKET, "source_3/images/plate 1/")
    expected = sorted((loc.key, len(body)) for loc, body in objects.items() if loc.key.startswith(prefix.key))
    faults = Faults(slowdown=0.3, internal_error=0.2, reset=0.2, seed=11)
    with FaultProxy(s3_server.endpoint_url, faults) as proxy:
        client = make_client(proxy.endpoint_url, anonymous=True)
        client.meta.events.register("before-parameter-build.s3.ListObjectsV2", _small_pages)
        listed = list_objects(client, prefix, retry=FAST)
        assert proxy.counts["slowdown"] + proxy.counts["internal_error"] + proxy.counts["reset"] > 0, proxy.counts
    assert sorted((r.key, r.size) for r in listed) == expected
    assert all(r.etag and r.path is None for r in listed)


def _small_pages(params, **_) -> None:
    """Seven keys a page, so a 25-object folder takes four pages."""
    params["MaxKeys"] = 7


def test_corrupted_bodies_are_caught_by_etag_md5_and_stored_crc(s3_server, objects, tmp_path):
    checked = {loc: body for loc, body in objects.items() if loc != MULTIPART and body}
    with FaultProxy(s3_server.endpoint_url, Faults(corrupt=0.3, seed=5)) as proxy:
        client = make_client(proxy.endpoint_url, anonymous=True)
        records = download_objects(client, list(checked), tmp_path, concurrency=4, retry=FAST)
        assert proxy.counts["corrupt"] > 0
    assert_identical(records, checked, tmp_path)


def test_a_body_that_never_matches_its_md5_fails_naming_the_key(s3_server, objects, tmp_path):
    location = list(objects)[3]
    with FaultProxy(s3_server.endpoint_url, Faults(corrupt=1.0)) as proxy:
        client = make_client(proxy.endpoint_url, anonymous=True)
        with pytest.raises(FetchError, match="MD5") as raised:
            download_objects(client, [location], tmp_path, retry=RetryPolicy(3, 0.001))
    assert location.key in str(raised.value)
    assert list(tmp_path.rglob("*.tiff*")) == []


@pytest.mark.parametrize("kind", ["slowdown", "internal_error", "reset", "truncate"])
def test_retries_are_bounded(s3_server, objects, tmp_path, kind):
    location = list(objects)[5]
    with FaultProxy(s3_server.endpoint_url, Faults(**{kind: 1.0})) as proxy:
        client = make_client(proxy.endpoint_url, anonymous=True)
        with pytest.raises(FetchError, match="after 3 attempts") as raised:
            download_objects(client, [location], tmp_path, retry=RetryPolicy(3, 0.001))
        assert location.key in str(raised.value)
        assert proxy.counts["GET"] == 3
        with pytest.raises(FetchError, match="after 2 attempts"):
            head_objects(client, [location], retry=RetryPolicy(2, 0.001))
        assert proxy.counts["HEAD"] == 2
    assert not cache_path(tmp_path, location.bucket, location.key).exists()


def test_unreachable_endpoint_fails_after_bounded_attempts(objects, tmp_path):
    client = make_client(f"http://127.0.0.1:{free_port()}", anonymous=True)
    location = next(iter(objects))
    with pytest.raises(FetchError, match="after 2 attempts.*EndpointConnectionError") as raised:
        download_objects(client, [location], tmp_path, retry=RetryPolicy(2, 0.001))
    assert location.key in str(raised.value)


def test_missing_key_raises_naming_the_key(s3_server, objects, tmp_path):
    missing = S3Location(BUCKET, "source_4/images/not there.tiff")
    client = make_client(s3_server.endpoint_url, anonymous=True)
    for fetch in (
        lambda: download_objects(client, [*list(objects)[:3], missing], tmp_path),
        lambda: head_objects(client, [missing, *list(objects)[:3]]),
    ):
        with pytest.raises(MissingObjectError, match="not there.tiff"):
            fetch()
    assert not cache_path(tmp_path, missing.bucket, missing.key).exists()


def test_allow_missing_returns_placeholders_in_place(s3_server, objects, tmp_path):
    missing = S3Location(BUCKET, "source_4/images/not there.tiff")
    present = list(objects)[:4]
    wanted = [present[0], missing, *present[1:]]
    with FaultProxy(s3_server.endpoint_url) as proxy:
        client = make_client(proxy.endpoint_url, anonymous=True)
        plan = head_objects(client, wanted, allow_missing=True)
        records = download_objects(client, wanted, tmp_path, allow_missing=True)
        assert proxy.counts["GET"] == len(wanted)
    placeholder = ObjectRecord(missing.bucket, missing.key, -1, "", None)
    assert plan[1] == placeholder and records[1] == placeholder and records[1].missing
    assert_identical(records[:1] + records[2:], {loc: objects[loc] for loc in present}, tmp_path)
    assert not cache_path(tmp_path, missing.bucket, missing.key).exists()


def test_objects_replaced_on_s3_are_caught_by_the_plan(s3_server, tmp_path):
    admin = s3_server.admin_client()
    location = S3Location(BUCKET, "source_9/replaced.tiff")
    old, new = os.urandom(5000), os.urandom(6000)
    admin.put_object(Bucket=BUCKET, Key=location.key, Body=old, ACL="public-read")
    client = make_client(s3_server.endpoint_url, anonymous=True)
    old_plan = head_objects(client, [location])
    download_objects(client, old_plan, tmp_path)
    admin.put_object(Bucket=BUCKET, Key=location.key, Body=new, ACL="public-read")
    with pytest.raises(FetchError, match="changed since it was planned"):
        download_objects(client, old_plan, tmp_path / "fresh")
    (record,) = download_objects(client, head_objects(client, [location]), tmp_path)
    assert record.path.read_bytes() == new


def test_large_objects_go_through_the_managed_transfer(s3_server, objects, tmp_path):
    """Multipart-uploaded and single-part objects above the threshold, fetched in ranged parts."""
    large = [loc for loc, body in objects.items() if len(body) >= LARGE]
    assert MULTIPART in large and len(large) >= 3
    parts = sum(math.ceil(len(objects[loc]) / LARGE) for loc in large)
    with FaultProxy(s3_server.endpoint_url) as proxy:
        client = make_client(proxy.endpoint_url, anonymous=True)
        records = download_objects(client, list(objects), tmp_path, concurrency=4, large_object_bytes=LARGE)
        # Unplanned: every object is GET once (a large one's body closed unread), then the
        # transfer GETs each large object in parts (after a HEAD, which one full CI run did not
        # show at the proxy: the parts are what this checks).
        assert proxy.counts["GET"] == len(objects) + parts and proxy.counts["HEAD"] <= len(large)
        made = proxy.counts["requests"]
        again = download_objects(client, list(objects), tmp_path, concurrency=4, large_object_bytes=LARGE)
        assert proxy.counts["requests"] == made  # verified copies in the cache: nothing is fetched again
    assert_identical(records, objects, tmp_path)
    assert again == records
    assert list(tmp_path.rglob(".*.part*")) == []


def test_large_objects_survive_faults_when_planned(s3_server, objects, tmp_path):
    """Rates are low because one failed part makes the whole object be fetched again.

    Which request takes which random draw depends on the threads' timing, so
    each kind is also forced once on a large object's first requests.
    """
    large = sorted((loc.key for loc, body in objects.items() if len(body) >= LARGE), key=len)
    fragments = [*large, *(key.rsplit("/", 1)[-1] for key in large)]  # a second request of the same objects
    kinds = ("slowdown", "internal_error", "reset", "truncate")
    forced = tuple(zip(fragments, kinds))
    faults = Faults(slowdown=0.01, internal_error=0.01, reset=0.01, truncate=0.01, seed=11, first_hits=forced)
    with FaultProxy(s3_server.endpoint_url, faults) as proxy:
        client = make_client(proxy.endpoint_url, anonymous=True)
        plan = head_objects(client, list(objects), concurrency=4, retry=FAST)
        records = download_objects(client, plan, tmp_path, concurrency=4, retry=FAST, large_object_bytes=LARGE)
        assert all(proxy.counts[kind] > 0 for kind in ("slowdown", "internal_error", "reset", "truncate")), proxy.counts
    assert_identical(records, objects, tmp_path)
    assert list(tmp_path.rglob(".*.part*")) == []


def test_large_single_part_object_is_checked_against_its_md5(s3_server, objects, tmp_path, caplog):
    """A flipped byte in one ranged part is caught by the MD5 of the whole file and fetched again."""
    location = next(loc for loc, body in objects.items() if len(body) >= LARGE and loc not in (MULTIPART, WITH_CRC))
    caplog.set_level("INFO", logger="workflow_scripts.fetch.objects")
    with FaultProxy(s3_server.endpoint_url, Faults(corrupt=0.15, seed=3)) as proxy:
        client = make_client(proxy.endpoint_url, anonymous=True)
        (record,) = download_objects(client, [location], tmp_path, retry=FAST, large_object_bytes=LARGE)
        assert proxy.counts["corrupt"] > 0
    assert any("does not match ETag" in message for message in caplog.messages), caplog.messages
    assert_identical([record], {location: objects[location]}, tmp_path)


def test_backoff_is_exponential_with_full_jitter_and_capped():
    policy = RetryPolicy(max_attempts=10, base_delay=0.5, max_delay=3.0)
    for attempt, cap in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 3.0), (9, 3.0)]:
        delays = [policy.delay(attempt) for _ in range(2000)]
        assert 0 <= min(delays) and max(delays) <= cap
        assert max(delays) > 0.9 * cap and min(delays) < 0.1 * cap
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
