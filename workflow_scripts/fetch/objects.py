"""Concurrent, verified, restartable download of S3 objects into the cache.

A plate is thousands of objects of a few MB each, fetched from a public
bucket that throttles and occasionally drops connections. One request at a
time leaves the link idle for the whole round trip, so objects are fetched
by a thread pool sharing one boto3 client (clients are thread-safe; its
``max_pool_connections`` should be at least the concurrency, as
``workflow_scripts.fetch.s3.make_client(..., max_pool_connections=N)`` allows).

Every object is written under a temporary name in its final folder and
renamed into place (``os.replace``) only after its size and, where possible,
its MD5 were checked, so a killed run never leaves a file that looks
complete. The client makes one attempt per call; the retries are done here,
so that a body cut short is retried like a 503 is, and every retry is logged.
What is retried: throttling and server errors (HTTP 5xx, 429, SlowDown),
dropped and reset connections, timeouts (a response that stalls past the
client's read timeout), bodies cut short or failing their checksum. What is
not: a missing object, access denied, any other 4xx. Each object gets at most
``max_attempts`` attempts (:class:`RetryPolicy`); a stage wraps its work in
:func:`retries_logged`, which logs one line with the retries it took in all
and the most one object needed.

Deciding what is already complete: after the rename, a small sidecar record
``.{name}.fetched`` (JSON: size, ETag, the file's mtime in ns) is written
beside the object. An object counts as complete when its sidecar
exists and the file's size and mtime still match it (and the size and ETag
match the plan, when the caller passes planned records). This costs one
``stat`` and one small read per object and no request, where re-hashing
every file would cost a full read of the cache and a HEAD per object a
round trip each. A file without a sidecar (a kill between rename and
record, a cache filled by another tool) or one changed afterwards
(truncated, rewritten in place) is downloaded again. Objects are assumed
immutable on S3 once recorded, as gallery objects are; pass planned records
from :func:`head_objects` to also catch objects replaced on S3. Files are
not fsynced: the guarantee covers killed jobs (what schedulers do), not
power cuts.

Large objects (at or above :data:`LARGE_OBJECT_BYTES`, a single-cell
backend can be tens of GB) go through boto3's managed transfer instead of
one GET: a single stream from S3 runs at a fraction of the link, and a
failure near the end of one would repeat the whole body. The managed
transfer splits the object into ranged GETs fetched by its own threads and
pinned to one version of the object (``IfMatch``). It writes the same
partial file, which is then checked (size, and the MD5 of the file when the
ETag is one), renamed and recorded like any other object, and a failed
transfer is retried as a whole by the same :class:`RetryPolicy`; its own
retries are turned off so that every retry is counted and logged here.
The size is taken from the plan when the caller passes one; otherwise the
GET reveals it, and that GET's body is closed unread. A transfer in flight
is not interrupted when another object fails.
"""

from __future__ import annotations

import glob
import hashlib
import http.client
import json
import logging
import os
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar, Self, TypeVar

import urllib3.exceptions
from boto3.exceptions import RetriesExceededError
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import (
    ClientError,
    FlexibleChecksumError,
    HTTPClientError,
    IncompleteReadError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from workflow_scripts.errors import InputError, StageError
from workflow_scripts.fetch.s3 import HostileKeyError, S3Location
from workflow_scripts.paths import cache_path

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

_CHUNK = 1024 * 1024
# Objects this large or larger are fetched by the managed transfer, in parts of this size.
LARGE_OBJECT_BYTES = 64 * 1024 * 1024
# Threads (and pooled connections) the managed transfer uses for one object.
_TRANSFER_CONCURRENCY = 8
_MD5_ETAG = re.compile(r"^[0-9a-f]{32}$")
# Server-side encryption under which the ETag is no longer the MD5 of the body.
_ETAG_NOT_MD5_SSE = {"aws:kms", "aws:kms:dsse"}
_MISSING_CODES = {"404", "NoSuchKey", "NotFound"}
_THROTTLE_CODES = {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "RequestLimitExceeded"}


class FetchError(StageError, RuntimeError):
    """An object could not be fetched; the message names its key and why."""


class MissingObjectError(FetchError):
    """The object does not exist (404 / NoSuchKey); never retried."""


class _BadBody(Exception):
    """A response body that failed verification; retried like a network error."""


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries with exponential backoff and full jitter.

    Full jitter (a uniform draw up to the exponential cap) keeps the threads
    that were throttled together from retrying together.
    """

    max_attempts: int = 8
    base_delay: float = 0.25
    max_delay: float = 20.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise InputError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.base_delay < 0 or self.max_delay < 0:
            raise InputError(f"retry delays must be >= 0: {self}")

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        return random.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))


class RetryTally:
    """Retries per object, counted while the tally is open (``with RetryTally() as tally``).

    The engine's threads report every retry to each open tally, so a stage
    can say how many retries a plate needed, and the most any one object
    needed, across all the engine calls it made in between.
    """

    _open: ClassVar[list[RetryTally]] = []
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self) -> None:
        self.per_object: Counter[S3Location] = Counter()

    def __enter__(self) -> Self:
        with self._lock:
            self._open.append(self)
        return self

    def __exit__(self, *exc) -> None:
        with self._lock:
            self._open.remove(self)

    @classmethod
    def count(cls, location: S3Location) -> None:
        """One more retry of ``location``, in every open tally."""
        with cls._lock:
            for tally in cls._open:
                tally.per_object[location] += 1

    @property
    def total(self) -> int:
        return sum(self.per_object.values())

    @property
    def most(self) -> int:
        """The most retries one object needed."""
        return max(self.per_object.values(), default=0)


@contextmanager
def retries_logged(what: str, retry: RetryPolicy) -> Iterator[RetryTally]:
    """Log the retries of the work inside, when it ends (failed or not), as one line naming ``what``.

    Not to be nested: the outer line would count the inner retries again.
    """
    with RetryTally() as tally:
        try:
            yield tally
        finally:
            log.info(
                "%s: %d retries over %d objects, at most %d for one object (max_attempts %d)",
                what, tally.total, len(tally.per_object), tally.most, retry.max_attempts,
            )  # fmt: skip


@dataclass(frozen=True)
class ObjectRecord:
    """One object: its size and ETag on S3 and its local copy.

    ``size`` is -1 and ``path`` None for an object that does not exist;
    ``path`` is None for records that only plan a download.
    """

    bucket: str
    key: str
    size: int
    etag: str
    path: Path | None

    @property
    def location(self) -> S3Location:
        return S3Location(self.bucket, self.key)

    @property
    def missing(self) -> bool:
        return self.size < 0


def partial_path(path: Path) -> Path:
    """Where the download of ``path`` is written until it is verified.

    The name is fixed, so the leftover of a killed run is overwritten by the
    next attempt instead of piling up; it is never read.
    """
    return path.with_name(f".{path.name}.part")


def sidecar_path(path: Path) -> Path:
    """The record that marks ``path`` as completely downloaded."""
    return path.with_name(f".{path.name}.fetched")


def head_objects(
    client,
    locations: Sequence[S3Location],
    *,
    concurrency: int = 32,
    retry: RetryPolicy = RetryPolicy(),
    allow_missing: bool = False,
) -> list[ObjectRecord]:
    """Size and ETag of each object (HEAD requests in parallel), in order.

    Lets the caller report how many objects and bytes a plate needs before
    anything is downloaded, and pass the records on to
    :func:`download_objects` so each body is checked against the plan.
    """
    stop = threading.Event()

    def plan(location: S3Location) -> ObjectRecord:
        try:
            return _with_retries(lambda: _head(client, location), location, retry, stop)
        except MissingObjectError as error:
            return _missing(location, error, allow_missing, logging.INFO)

    return _in_parallel(plan, list(locations), concurrency, stop)


def list_objects(client, prefix: S3Location, *, retry: RetryPolicy = RetryPolicy()) -> list[ObjectRecord]:
    """Every object under ``prefix`` (ListObjectsV2), each page with the engine's retries.

    A folder of per-site CSVs is known only by listing it; a throttled or
    dropped page is retried like any other request instead of failing the plate.
    """
    stop = threading.Event()
    records: list[ObjectRecord] = []
    token: str | None = None
    while True:
        extra = {"ContinuationToken": token} if token else {}
        page = _with_retries(
            lambda: client.list_objects_v2(Bucket=prefix.bucket, Prefix=prefix.key, **extra), prefix, retry, stop
        )
        for item in page.get("Contents", []):
            records.append(ObjectRecord(prefix.bucket, item["Key"], item["Size"], item["ETag"].strip('"'), None))
        token = page.get("NextContinuationToken")
        if not page.get("IsTruncated") or not token:
            return records


def download_objects(
    client,
    locations: Sequence[S3Location | ObjectRecord],
    cache_dir: str | Path,
    *,
    concurrency: int = 32,
    retry: RetryPolicy = RetryPolicy(),
    allow_missing: bool = False,
    large_object_bytes: int = LARGE_OBJECT_BYTES,
) -> list[ObjectRecord]:
    """Download the objects into ``cache_dir``; one record per location, in order.

    Locations may be planned records from :func:`head_objects`: their size
    and ETag are then checked too. Objects already complete (see the module
    docstring) are not requested again. Objects of ``large_object_bytes`` or
    more are fetched by boto3's managed transfer. A missing object raises
    :class:`MissingObjectError`, or with ``allow_missing`` is logged and
    comes back with size -1 and no path. Any other failure, after the
    retries, raises :class:`FetchError` and stops the remaining downloads.
    """
    pool_size = client.meta.config.max_pool_connections
    if pool_size < concurrency:
        log.warning(
            "client pool holds %d connections for %d threads; raise max_pool_connections", pool_size, concurrency
        )
    plans: dict[S3Location, ObjectRecord] = {}
    for plan in map(_as_plan, locations):
        plans.setdefault(plan.location, plan)
    wanted = list(plans.values())
    started = time.monotonic()
    stop = threading.Event()

    def fetch(planned: ObjectRecord) -> tuple[ObjectRecord, bool]:
        try:
            return _download(client, planned, Path(cache_dir), retry, large_object_bytes, stop)
        except MissingObjectError as error:
            return _missing(planned.location, error, allow_missing, logging.WARNING), False

    outcomes = _in_parallel(fetch, wanted, concurrency, stop)
    _log_summary(outcomes, time.monotonic() - started)
    records = {record.location: record for record, _ in outcomes}
    return [records[S3Location(item.bucket, item.key)] for item in locations]


def _as_plan(item: S3Location | ObjectRecord) -> ObjectRecord:
    """A plan for one object; a bare location has unknown size and ETag."""
    if isinstance(item, ObjectRecord):
        return replace(item, path=None)
    return ObjectRecord(item.bucket, item.key, -1, "", None)


def _missing(location: S3Location, error: MissingObjectError, allow_missing: bool, level: int) -> ObjectRecord:
    """A placeholder record where missing objects are allowed (logged at ``level``), else the error."""
    if not allow_missing:
        raise error
    log.log(level, "%s", error)
    return ObjectRecord(location.bucket, location.key, -1, "", None)


def _in_parallel(work: Callable[[T], R], items: list[T], concurrency: int, stop: threading.Event) -> list[R]:
    """``work`` on every item in a thread pool; the first error stops the rest."""
    if concurrency < 1:
        raise InputError(f"concurrency must be >= 1, got {concurrency}")
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=min(concurrency, len(items)), thread_name_prefix="fetch") as pool:
        futures = [pool.submit(work, item) for item in items]
        try:
            wait(futures, return_when=FIRST_EXCEPTION)
            failed = next((f for f in futures if f.done() and f.exception()), None)
            if failed is not None:
                raise failed.exception()
            return [future.result() for future in futures]
        except BaseException:
            stop.set()
            for future in futures:
                future.cancel()
            raise


def _with_retries(attempt_once: Callable[[], T], location: S3Location, retry: RetryPolicy, stop: threading.Event) -> T:
    """Run one request until it succeeds, fails for good, or attempts run out."""
    attempt = 1
    while True:
        if stop.is_set():
            raise FetchError(f"{location}: cancelled because another object failed")
        try:
            return attempt_once()
        except Exception as error:
            reason = _transient_reason(error)
            if reason is None:
                raise _permanent(location, error) from error
            if attempt >= retry.max_attempts:
                raise FetchError(f"{location}: failed after {attempt} attempts; last error: {reason}") from error
        pause = retry.delay(attempt)
        RetryTally.count(location)
        log.info(
            "%s: attempt %d/%d failed (%s); retrying in %.2f s", location, attempt, retry.max_attempts, reason, pause
        )
        stop.wait(pause)
        attempt += 1


def _transient_reason(error: Exception) -> str | None:
    """Why a failed request is worth repeating, or None when it is not."""
    if isinstance(error, RetriesExceededError) and isinstance(error.last_exception, Exception):
        # The managed transfer's wrapper around the failure of one part.
        return _transient_reason(error.last_exception)
    if isinstance(error, ClientError):
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        code = error.response.get("Error", {}).get("Code", "")
        if status >= 500 or status == 429 or code in _THROTTLE_CODES:
            return f"HTTP {status}" + (f" {code}" if code != str(status) else "")
        return None
    if isinstance(
        error,
        (
            _BadBody,
            BotoConnectionError,  # EndpointConnectionError, ConnectTimeoutError
            HTTPClientError,  # ReadTimeoutError, ConnectionClosedError, ResponseStreamingError
            IncompleteReadError,
            FlexibleChecksumError,  # a body that fails the object's stored CRC
            urllib3.exceptions.HTTPError,  # ProtocolError while streaming a body
            http.client.HTTPException,  # IncompleteRead
            ConnectionError,  # reset, aborted, broken pipe
            TimeoutError,
        ),
    ):
        return f"{type(error).__name__}: {error}"
    return None


def _permanent(location: S3Location, error: Exception) -> Exception:
    """The error to raise for a failure that retrying cannot fix."""
    if isinstance(error, FetchError):
        return error
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "")
        if code in _MISSING_CODES:
            return MissingObjectError(f"{location}: no such object (key {location.key!r})")
        message = error.response.get("Error", {}).get("Message", "")
        return FetchError(f"{location}: {code} {message}".rstrip())
    return FetchError(f"{location}: {type(error).__name__}: {error}")


def _head(client, location: S3Location) -> ObjectRecord:
    response = client.head_object(Bucket=location.bucket, Key=location.key)
    return ObjectRecord(location.bucket, location.key, response["ContentLength"], response["ETag"].strip('"'), None)


def _download(
    client,
    planned: ObjectRecord,
    cache_dir: Path,
    retry: RetryPolicy,
    large_object_bytes: int,
    stop: threading.Event,
) -> tuple[ObjectRecord, bool]:
    """The object's record, and whether it had to be downloaded."""
    if planned.key.endswith("/"):
        raise HostileKeyError(f"{planned.location}: refusing key {planned.key!r}: it names a folder, not an object")
    path = cache_path(cache_dir, planned.bucket, planned.key)
    done = _complete(path, planned)
    if done is not None:
        return done, False
    path.parent.mkdir(parents=True, exist_ok=True)
    sidecar_path(path).unlink(missing_ok=True)
    record = _with_retries(
        lambda: _fetch_verified(client, planned, path, large_object_bytes, stop), planned.location, retry, stop
    )
    _write_sidecar(path, record)
    return record, True


def _complete(path: Path, planned: ObjectRecord) -> ObjectRecord | None:
    """The record of a verified earlier download still intact, else None."""
    try:
        saved = json.loads(sidecar_path(path).read_text())
        stat = path.stat()
        size, etag, mtime_ns = int(saved["size"]), str(saved["etag"]), int(saved["mtime_ns"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if (stat.st_size, stat.st_mtime_ns) != (size, mtime_ns):
        return None
    if (planned.size >= 0 and planned.size != size) or (planned.etag and planned.etag != etag):
        return None
    return ObjectRecord(planned.bucket, planned.key, size, etag, path)


def _fetch_verified(
    client, planned: ObjectRecord, path: Path, large_object_bytes: int, stop: threading.Event
) -> ObjectRecord:
    """One attempt: the body to the partial file, checked, then renamed into place.

    A small object's body is streamed from one GET. A large one (see the
    module docstring) is only HEADed when the plan says it is large, its
    GET closed unread when the GET says so, and fetched by
    :func:`_transfer_to`.
    """
    location = planned.location
    request = client.head_object if planned.size >= large_object_bytes else client.get_object
    response = request(Bucket=location.bucket, Key=location.key)
    body = response.get("Body")
    size, etag = response["ContentLength"], response["ETag"].strip('"')
    check_md5 = _is_md5(etag, response.get("ServerSideEncryption"))
    partial = partial_path(path)
    try:
        if (planned.size >= 0 and size != planned.size) or (planned.etag and etag != planned.etag):
            raise FetchError(
                f"{location}: object changed since it was planned "
                f"(size {planned.size} -> {size}, ETag {planned.etag} -> {etag})"
            )
        if size >= large_object_bytes:
            if body is not None:
                body.close()
            _transfer_to(client, location, partial, large_object_bytes)
            received, md5 = partial.stat().st_size, _file_md5(partial) if check_md5 else ""
        else:
            received, md5 = _stream_to(body, partial, stop)
        if received != size:
            raise _BadBody(f"received {received} of {size} bytes")
        if check_md5 and md5 != etag:
            raise _BadBody(f"MD5 {md5} of the body does not match ETag {etag}")
        os.replace(partial, path)
    except BaseException:
        if body is not None:
            body.close()
        partial.unlink(missing_ok=True)
        raise
    return ObjectRecord(location.bucket, location.key, size, etag, path)


def _transfer_to(client, location: S3Location, partial: Path, part_bytes: int) -> None:
    """Fetch an object to ``partial`` with boto3's managed transfer, in parts of ``part_bytes``.

    The transfer writes under a temporary name of its own (``partial`` plus
    eight hex digits) and renames it to ``partial`` when it is done; what a
    killed run left under such a name is removed first, so that leftovers of
    large objects do not pile up in the cache. The classic transfer client
    is asked for because the CRT one, where installed, retries on its own
    and raises other error types.
    """
    for leftover in partial.parent.glob(glob.escape(partial.name) + "." + "[0-9a-fA-F]" * 8):
        leftover.unlink(missing_ok=True)
    config = TransferConfig(
        multipart_threshold=part_bytes,
        multipart_chunksize=part_bytes,
        max_concurrency=_TRANSFER_CONCURRENCY,
        num_download_attempts=1,
        preferred_transfer_client="classic",
    )
    client.download_file(location.bucket, location.key, str(partial), Config=config)


def _file_md5(path: Path) -> str:
    """MD5 hex digest of a file, read in chunks."""
    md5 = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            md5.update(chunk)
    return md5.hexdigest()


def _stream_to(body, partial: Path, stop: threading.Event) -> tuple[int, str]:
    """Write a response body to ``partial``; its length and MD5 hex digest."""
    md5 = hashlib.md5(usedforsecurity=False)
    received = 0
    with body, open(partial, "wb") as out:
        for chunk in body.iter_chunks(_CHUNK):
            if stop.is_set():
                raise FetchError(f"{partial}: cancelled because another object failed")
            md5.update(chunk)
            out.write(chunk)
            received += len(chunk)
    return received, md5.hexdigest()


def _is_md5(etag: str, encryption: str | None) -> bool:
    """Whether the ETag is the body's MD5: single-part and not KMS-encrypted."""
    return bool(_MD5_ETAG.match(etag)) and encryption not in _ETAG_NOT_MD5_SSE


def _write_sidecar(path: Path, record: ObjectRecord) -> None:
    """Mark the renamed file complete.

    Written in place, without a temporary name: a record torn by a kill is
    a prefix of the JSON object, which does not parse and so counts as no
    record at all. That saves two file operations per object, which on a
    busy shared file system cost as much as the rest of the bookkeeping.
    """
    text = json.dumps({"size": record.size, "etag": record.etag, "mtime_ns": path.stat().st_mtime_ns})
    sidecar_path(path).write_text(text)


def _log_summary(outcomes: list[tuple[ObjectRecord, bool]], seconds: float) -> None:
    fetched = [record for record, downloaded in outcomes if downloaded]
    missing = sum(record.missing for record, _ in outcomes)
    size = sum(record.size for record in fetched)
    log.info(
        "downloaded %d objects (%.1f MB) in %.1f s; %d already complete, %d missing",
        len(fetched),
        size / 1e6,
        seconds,
        len(outcomes) - len(fetched) - missing,
        missing,
    )
