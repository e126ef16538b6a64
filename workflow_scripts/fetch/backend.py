"""A plate's CellProfiler output: found in the bucket, fetched into the cache, listed in a manifest.

A plate may have a single-cell SQLite backend, the backend CSV that collate
aggregates from it, per-site analysis CSVs, or only finished well profiles;
``cellprofiler.sources`` says which are wanted, in order of preference. The
first one present is downloaded by the fetch engine
(:func:`workflow_scripts.fetch.objects.download_objects`: verified,
restartable, boto3's managed transfer for backends of tens of GB), with the
sizes and ETags that HEAD or the listing found as the plan, so an object that
changed in between is an error rather than a silent mix.

``fetch/cellprofiler.parquet`` lists every object fetched (kind, bucket, key,
local path, size, ETag). It is the CellProfiler stage's declared input, so the
plan, a rerun and cluster staging all see the backend; that stage reads the
local copies it lists after checking they still have their recorded size (the
cache is not a Snakemake output, and can change under a finished manifest).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from workflow_scripts.atomic import write_parquet_atomic
from workflow_scripts.cellprofiler.backend_schema import COMPARTMENTS
from workflow_scripts.errors import InputError, StageError
from workflow_scripts.fetch.gallery import PlateRef
from workflow_scripts.fetch.objects import (
    FetchError,
    ObjectRecord,
    RetryPolicy,
    download_objects,
    head_objects,
    list_objects,
    retries_logged,
)
from workflow_scripts.fetch.s3 import S3Location

if TYPE_CHECKING:  # plate.py plans backends with this module: no import cycle at run time
    from workflow_scripts.fetch.plate import FetchSettings

log = logging.getLogger("workflow_scripts.fetch")

KINDS = ("sqlite", "csv", "analysis", "profiles")
SITE_TABLES = ("Image", *COMPARTMENTS)
MANIFEST_COLUMNS = ("kind", "bucket", "key", "path", "size", "etag")


def backend_key(plate: PlateRef, kind: str) -> str:
    """The key of one kind of output (for 'analysis', the folder holding the site folders)."""
    root = f"{plate.prefix}/workspace"
    keys = {
        "sqlite": f"{root}/backend/{plate.batch}/{plate.plate}/{plate.plate}.sqlite",
        "csv": f"{root}/backend/{plate.batch}/{plate.plate}/{plate.plate}.csv",
        "analysis": f"{root}/analysis/{plate.batch}/{plate.plate}/analysis/",
        "profiles": f"{root}/profiles/{plate.batch}/{plate.plate}/{plate.plate}.parquet",
    }
    if kind not in keys:
        raise InputError(f"unknown CellProfiler source {kind!r}; choose from {KINDS}")
    return keys[kind]


def planned_sources(config: dict[str, Any]) -> Sequence[str]:
    """The sources a plan looks for: the configured ones when CellProfiler features are wanted, else none."""
    return config["cellprofiler"]["sources"] if "cellprofiler" in config["features"] else ()


@dataclass(frozen=True)
class Backend:
    """The preferred output found in the bucket: its kind, its key and its objects (size and ETag, no copy)."""

    kind: str
    location: S3Location
    objects: list[ObjectRecord]

    @property
    def size(self) -> int:
        return sum(record.size for record in self.objects)


def _analysis_objects(client, location: S3Location, retry: RetryPolicy) -> list[ObjectRecord]:
    """The four CSVs of every site folder under ``location``; none where there is no site folder.

    A site folder without one of them is one where CellProfiler did not
    finish: an error naming the missing key, not a plate silently short of a site.
    """
    listed = {record.key: record for record in list_objects(client, location, retry=retry)}
    relative = (key[len(location.key) :] for key in listed)
    folders = sorted({location.key + rel.split("/")[0] + "/" for rel in relative if "/" in rel})
    objects = []
    for folder in folders:
        for table in SITE_TABLES:
            key = f"{folder}{table}.csv"
            if key not in listed:
                raise FetchError(f"analysis site folder is incomplete: no s3://{location.bucket}/{key}")
            objects.append(listed[key])
    return objects


def _present(client, location: S3Location, kind: str, settings: FetchSettings) -> list[ObjectRecord]:
    """The objects of one kind of output; empty when the bucket lacks it."""
    if kind == "analysis":
        return _analysis_objects(client, location, settings.retry)
    [record] = head_objects(client, [location], retry=settings.retry, allow_missing=True)
    return [] if record.missing else [record]


def locate_backend(client, plate: PlateRef, settings: FetchSettings, sources: Sequence[str]) -> Backend:
    """The first of ``sources`` the bucket has (HEAD and listing only, nothing downloaded).

    A plate with none of them is an error naming the plate and every key tried.
    """
    tried = []
    for kind in sources:
        location = S3Location(settings.bucket, backend_key(plate, kind))
        try:
            objects = _present(client, location, kind, settings)
        except FetchError as error:
            raise FetchError(f"plate {plate.plate}: {error}") from error
        if objects:
            log.info("plate %s: CellProfiler %s output at %s (%d objects)", plate.plate, kind, location, len(objects))
            return Backend(kind, location, objects)
        log.info("plate %s: no CellProfiler %s output at %s", plate.plate, kind, location)
        tried.append(f"{location} ({kind})")
    raise FetchError(f"plate {plate.plate}: no CellProfiler output found; tried {', '.join(tried) or 'no source'}")


def fetch_backend(plate: PlateRef, settings: FetchSettings, sources: Sequence[str], out: Path) -> pd.DataFrame:
    """Download the plate's preferred output into the cache; write and return its manifest."""
    with retries_logged(f"plate {plate.plate} (CellProfiler output)", settings.retry):
        client = settings.client()
        backend = locate_backend(client, plate, settings, sources)
        try:
            records = download_objects(
                client, backend.objects, settings.cache_dir, concurrency=settings.concurrency, retry=settings.retry
            )
        except StageError as error:
            raise type(error)(f"plate {plate.plate}: {error}") from error
    manifest = pd.DataFrame([{"kind": backend.kind, **asdict(r)} for r in records], columns=list(MANIFEST_COLUMNS))
    manifest = manifest.astype(
        {"kind": "string", "bucket": "string", "key": "string", "path": "string", "etag": "string"}
    )
    write_parquet_atomic(manifest, out)
    log.info(
        "plate %s: %s output, %d objects, %.1f MB verified", plate.plate, backend.kind, len(records), backend.size / 1e6
    )
    return manifest


@dataclass(frozen=True)
class LocalBackend:
    """A fetched output as its manifest lists it: the kind, where it came from, the local copies."""

    kind: str
    location: S3Location
    paths: list[Path]
    size: int

    def provenance(self) -> dict[str, object]:
        """What an output made from it records about where its numbers came from."""
        return {"source": self.kind, "url": str(self.location), "objects": len(self.paths), "bytes": self.size}


def _check_copy(manifest: Path, row: pd.Series) -> Path:
    """The local copy of one listed object, if it still has the size the manifest records."""
    path = Path(row["path"])
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        size = None
    if size != row["size"]:
        found = "is missing" if size is None else f"has {size} bytes"
        raise InputError(
            f"{manifest}: the cached copy {path} of s3://{row['bucket']}/{row['key']} {found}, "
            f"the manifest says {row['size']}; delete the manifest to fetch it again"
        )
    return path


def _manifest_table(path: Path, plate: PlateRef) -> tuple[pd.DataFrame, str, str]:
    """The manifest's rows, its one kind and its one bucket; anything else is an error naming the file."""
    table = pd.read_parquet(path)
    missing = [c for c in MANIFEST_COLUMNS if c not in table.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {missing}; not a CellProfiler manifest")
    kinds, buckets = set(table["kind"]), set(table["bucket"])
    if table.empty or len(kinds) != 1 or len(buckets) != 1 or not kinds <= set(KINDS):
        raise InputError(f"{path}: expected the objects of one CellProfiler output, found kinds {sorted(kinds)}")
    kind = kinds.pop()
    root = backend_key(plate, kind)
    foreign = [key for key in table["key"] if not key.startswith(root)]
    if foreign:
        raise InputError(f"{path}: {foreign[0]} is not part of plate {plate.plate}'s {kind} output {root}")
    return table, kind, buckets.pop()


def read_backend_manifest(path: str | Path, plate: PlateRef) -> LocalBackend:
    """The fetched output of ``plate``, each local copy checked against its recorded size."""
    path = Path(path)
    table, kind, bucket = _manifest_table(path, plate)
    paths = [_check_copy(path, row) for _, row in table.iterrows()]
    return LocalBackend(kind, S3Location(bucket, backend_key(plate, kind)), paths, int(table["size"].sum()))
