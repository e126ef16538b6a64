"""Find a plate's CellProfiler output in the bucket and bring it into the cache.

A plate may have a single-cell SQLite backend, the backend CSV that collate
aggregates from it, per-site analysis CSVs, or only finished well profiles.
The configured order says which is preferred; the first one present is
downloaded (boto3's managed transfer: multipart and threaded for backends of
tens of GB) into the cache at ``paths.cache_path``, under a temporary name
renamed only once the size matches the listing, so a killed download never
looks complete and a complete one is never fetched twice.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from workflow_scripts.cellprofiler.layout import COMPARTMENTS
from workflow_scripts.paths import cache_path

log = logging.getLogger(__name__)

KINDS = ("sqlite", "csv", "analysis", "profiles")
DEFAULT_ORDER = ("sqlite", "csv", "analysis")
SITE_TABLES = ("Image", *COMPARTMENTS)
TRANSFER = TransferConfig(multipart_threshold=64 * 2**20, multipart_chunksize=64 * 2**20, max_concurrency=8)


def source_key(prefix: str, batch: str, plate: str, kind: str) -> str:
    """The object key of one kind of output (for 'analysis', the folder of the site folders)."""
    root = f"{prefix.strip('/')}/workspace"
    keys = {
        "sqlite": f"{root}/backend/{batch}/{plate}/{plate}.sqlite",
        "csv": f"{root}/backend/{batch}/{plate}/{plate}.csv",
        "analysis": f"{root}/analysis/{batch}/{plate}/analysis/",
        "profiles": f"{root}/profiles/{batch}/{plate}/{plate}.parquet",
    }
    if kind not in keys:
        raise ValueError(f"unknown CellProfiler source {kind!r}; choose from {KINDS}")
    return keys[kind]


@dataclass(frozen=True)
class FetchedSource:
    """The source that was found: its kind, where it lives, and its local copy.

    For 'analysis', ``paths`` are the local site folders; otherwise the one file.
    """

    kind: str
    bucket: str
    key: str
    paths: list[Path]
    objects: int
    size: int

    def provenance(self) -> dict[str, object]:
        """What the output records about where its numbers came from."""
        return {
            "source": self.kind,
            "url": f"s3://{self.bucket}/{self.key}",
            "objects": self.objects,
            "bytes": self.size,
        }


def _head_size(client, bucket: str, key: str) -> int | None:
    """The object's size, or None where it does not exist."""
    try:
        return client.head_object(Bucket=bucket, Key=key)["ContentLength"]
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise


def _list_sizes(client, bucket: str, prefix: str) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        sizes.update({obj["Key"]: obj["Size"] for obj in page.get("Contents", [])})
    return sizes


def _site_tables(bucket: str, folder: str, sizes: dict[str, int]) -> dict[str, int]:
    """The four CSVs of a site folder; a missing one means CellProfiler did not finish there."""
    wanted = [f"{folder}{table}.csv" for table in SITE_TABLES]
    missing = [key for key in wanted if key not in sizes]
    if missing:
        raise FileNotFoundError(f"analysis site folder is incomplete: no s3://{bucket}/{missing[0]}")
    return {key: sizes[key] for key in wanted}


def _analysis_objects(client, bucket: str, prefix: str) -> dict[str, int]:
    """Every site folder's CSVs under ``prefix``; empty where there is no site folder."""
    sizes = _list_sizes(client, bucket, prefix)
    relative = (key[len(prefix) :] for key in sizes)
    folders = sorted({prefix + rel.split("/")[0] + "/" for rel in relative if "/" in rel})
    objects: dict[str, int] = {}
    for folder in folders:
        objects.update(_site_tables(bucket, folder, sizes))
    return objects


def download(client, bucket: str, key: str, size: int, cache_dir: str | Path) -> Path:
    """One object into the cache, unless an intact copy is there already."""
    target = cache_path(cache_dir, bucket, key)
    if target.is_file() and target.stat().st_size == size:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        client.download_file(bucket, key, str(partial), Config=TRANSFER)
        got = partial.stat().st_size
        if got != size:
            raise OSError(f"s3://{bucket}/{key}: downloaded {got} bytes, the bucket lists {size}")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def _present(client, bucket: str, key: str, kind: str) -> dict[str, int]:
    if kind == "analysis":
        return _analysis_objects(client, bucket, key)
    size = _head_size(client, bucket, key)
    return {} if size is None else {key: size}


def fetch_source(
    client,
    bucket: str,
    prefix: str,
    batch: str,
    plate: str,
    cache_dir: str | Path,
    order: Sequence[str] = DEFAULT_ORDER,
    workers: int = 8,
) -> FetchedSource:
    """Download the first source in ``order`` that the bucket has.

    Raises FileNotFoundError naming every key tried when there is none.
    """
    tried = []
    for kind in order:
        key = source_key(prefix, batch, plate, kind)
        objects = _present(client, bucket, key, kind)
        if not objects:
            log.info("plate %s: no %s output at s3://%s/%s", plate, kind, bucket, key)
            tried.append(f"s3://{bucket}/{key} ({kind})")
            continue
        log.info("plate %s: using %s output at s3://%s/%s (%d objects)", plate, kind, bucket, key, len(objects))
        with ThreadPoolExecutor(max(1, workers)) as pool:
            local = list(pool.map(lambda item: download(client, bucket, *item, cache_dir), objects.items()))
        paths = sorted({p.parent for p in local}) if kind == "analysis" else local
        return FetchedSource(kind, bucket, key, paths, len(objects), sum(objects.values()))
    raise FileNotFoundError(f"plate {plate}: no CellProfiler output found; tried {', '.join(tried)}")
