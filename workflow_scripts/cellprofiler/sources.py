"""Find a plate's CellProfiler output in the bucket and bring it into the cache.

A plate may have a single-cell SQLite backend, the backend CSV that collate
aggregates from it, per-site analysis CSVs, or only finished well profiles.
The configured order says which is preferred; the first one present is
downloaded into the cache by :func:`workflow_scripts.fetch_objects.download_objects`,
the workflow's one download engine: verified, restartable, and using boto3's
managed transfer for backends of tens of GB. The sizes found by the listing
or HEAD are passed on as the plan, so a large backend goes straight to the
managed transfer and an object that changed size since is an error.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from workflow_scripts.cellprofiler.layout import COMPARTMENTS
from workflow_scripts.fetch_objects import ObjectRecord, download_objects, head_objects
from workflow_scripts.s3 import S3Location

log = logging.getLogger(__name__)

KINDS = ("sqlite", "csv", "analysis", "profiles")
DEFAULT_ORDER = ("sqlite", "csv", "analysis")
SITE_TABLES = ("Image", *COMPARTMENTS)


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


def _present(client, bucket: str, key: str, kind: str) -> dict[str, int]:
    if kind == "analysis":
        return _analysis_objects(client, bucket, key)
    [record] = head_objects(client, [S3Location(bucket, key)], allow_missing=True)
    return {} if record.missing else {key: record.size}


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
        planned = [ObjectRecord(bucket, object_key, size, "", None) for object_key, size in objects.items()]
        local = [record.path for record in download_objects(client, planned, cache_dir, concurrency=max(1, workers))]
        paths = sorted({p.parent for p in local}) if kind == "analysis" else local
        return FetchedSource(kind, bucket, key, paths, len(objects), sum(objects.values()))
    raise FileNotFoundError(f"plate {plate}: no CellProfiler output found; tried {', '.join(tried)}")
