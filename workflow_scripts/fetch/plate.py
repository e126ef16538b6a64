"""A plate's LoadData, images and illumination files from S3, or their plan.

``fetch_plate`` writes ``load_data.parquet`` (the normalised,
sample-restricted LoadData) and ``fetch/manifest.parquet`` (every object with
its verified size and ETag); ``plan_plate`` writes the object count and bytes
of a plate, and of its CellProfiler output where that is wanted, without
downloading anything but LoadData.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from workflow_scripts.atomic import write_parquet_atomic, write_text_atomic
from workflow_scripts.errors import InputError, StageError
from workflow_scripts.fetch.backend import locate_backend
from workflow_scripts.fetch.gallery import PlateRef
from workflow_scripts.fetch.load_data import (
    LoadDataError,
    image_urls,
    normalize_load_data,
    read_load_data_file,
    restrict_sample,
)
from workflow_scripts.fetch.objects import (
    FetchError,
    ObjectRecord,
    RetryPolicy,
    download_objects,
    head_objects,
    retries_logged,
)
from workflow_scripts.fetch.s3 import S3Location, make_client, parse_s3_url

log = logging.getLogger("workflow_scripts.fetch")

# The plan's columns that add up to the total row.
PLAN_COUNTS = ("sites", "objects", "bytes", "missing", "cellprofiler_objects", "cellprofiler_bytes")


@dataclass(frozen=True)
class FetchSettings:
    """What the config says about fetching (``gallery``, ``sample``, ``fetch``, ``channels``, ``cache_dir``)."""

    bucket: str
    cache_dir: Path
    channels: Sequence[str]
    endpoint_url: str | None
    anonymous: bool
    wells: Sequence[str]
    sites: Sequence[str]
    concurrency: int
    max_attempts: int
    read_timeout: float
    illum: bool
    allow_missing: bool

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> FetchSettings:
        """The settings of a (schema-completed) config."""
        gallery, sample, fetch = config["gallery"], config["sample"], config["fetch"]
        return cls(
            bucket=gallery["bucket"],
            cache_dir=Path(config["cache_dir"]),
            channels=config["channels"],
            endpoint_url=gallery["endpoint_url"],
            anonymous=gallery["anonymous"],
            wells=sample["wells"],
            sites=[str(site) for site in sample["sites"]],
            concurrency=fetch["concurrency"],
            max_attempts=fetch["max_attempts"],
            read_timeout=fetch["read_timeout"],
            illum=fetch["illum"],
            allow_missing=fetch["allow_missing"],
        )

    @property
    def retry(self) -> RetryPolicy:
        return RetryPolicy(max_attempts=self.max_attempts)

    def client(self):
        """The S3 client these settings describe, with a connection for each download thread."""
        return make_client(self.endpoint_url, self.anonymous, self.concurrency, self.read_timeout)


def existing(client, keys: Sequence[str], settings: FetchSettings) -> list[ObjectRecord]:
    """HEAD each key (with retries); the records of those that exist, in order."""
    locations = [S3Location(settings.bucket, key) for key in keys]
    records = head_objects(client, locations, concurrency=len(keys), retry=settings.retry, allow_missing=True)
    return [record for record in records if not record.missing]


def locate_load_data(client, plate: PlateRef, settings: FetchSettings) -> S3Location:
    """The most preferred LoadData candidate that exists; a clear error when none does."""
    keys = plate.load_data_keys()
    found = existing(client, keys, settings)
    if not found:
        raise FetchError(f"plate {plate.plate}: no LoadData in s3://{settings.bucket}/ (tried {', '.join(keys)})")
    return found[0].location


def plate_sites(client, plate: PlateRef, settings: FetchSettings) -> pd.DataFrame:
    """The plate's normalised LoadData, restricted to the configured sample."""
    location = locate_load_data(client, plate, settings)
    [record] = download_objects(client, [location], settings.cache_dir, retry=settings.retry)
    try:
        table = read_load_data_file(record.path)
        sites = normalize_load_data(table, str(location), settings.channels, plate=plate.plate)
        sites = _fill_plate_metadata(sites, plate)
        sites = restrict_sample(sites, settings.wells, settings.sites, plate.plate)
    except LoadDataError as error:
        raise LoadDataError(f"plate {plate.plate}: {error}") from error
    if settings.illum and not any(c.startswith("URL_Illum") for c in sites.columns):
        sites = _add_conventional_illum(client, sites, plate, settings)
    if not settings.illum:
        sites = sites.drop(columns=[c for c in sites.columns if c.startswith("URL_Illum")])
    return sites


def _fill_plate_metadata(sites: pd.DataFrame, plate: PlateRef) -> pd.DataFrame:
    """Source and batch come from the plate table where LoadData lacks them."""
    for column, value in (("Metadata_Source", plate.source), ("Metadata_Batch", plate.batch)):
        if column not in sites.columns:
            sites.insert(0, column, pd.Series(value, index=sites.index, dtype="string"))
    return sites


def _add_conventional_illum(client, sites: pd.DataFrame, plate: PlateRef, settings: FetchSettings) -> pd.DataFrame:
    """Plates whose LoadData names no illumination may still have the files."""
    keys = {ch: plate.illum_key(ch) for ch in settings.channels}
    if len(existing(client, list(keys.values()), settings)) < len(keys):
        log.info("plate %s: no illumination functions in the gallery", plate.plate)
        return sites
    for channel, key in keys.items():
        sites[f"URL_Illum{channel}"] = pd.Series(f"s3://{settings.bucket}/{key}", index=sites.index, dtype="string")
    return sites


def plate_locations(sites: pd.DataFrame, plate: PlateRef) -> list[S3Location]:
    """Every object the sites name, as locations; hostile keys are refused all at once, naming the plate.

    LoadData is downloaded content: a key in it becomes a path in the cache,
    so one that could leave the cache (see :mod:`workflow_scripts.fetch.s3`)
    stops the plate before anything is downloaded.
    """
    locations, refused = [], []
    for url in image_urls(sites):
        try:
            locations.append(parse_s3_url(url))
        except InputError as error:
            refused.append(str(error))
    if refused:
        shown = "; ".join(refused[:5]) + (f"; and {len(refused) - 5} more" if len(refused) > 5 else "")
        raise LoadDataError(f"plate {plate.plate}: LoadData names {len(refused)} object(s) it cannot fetch: {shown}")
    return locations


def fetch_plate(plate: PlateRef, settings: FetchSettings, out_load_data: Path, out_manifest: Path) -> pd.DataFrame:
    """Download every object the plate's sampled sites name; write both outputs."""
    with retries_logged(f"plate {plate.plate} (LoadData, images, illumination)", settings.retry):
        client = settings.client()
        sites = plate_sites(client, plate, settings)
        locations = plate_locations(sites, plate)
        log.info("plate %s: %d sites, %d objects", plate.plate, len(sites), len(locations))
        try:
            records = download_objects(
                client,
                locations,
                settings.cache_dir,
                concurrency=settings.concurrency,
                retry=settings.retry,
                allow_missing=settings.allow_missing,
            )
        except StageError as error:
            raise type(error)(f"plate {plate.plate}: {error}") from error
    manifest = pd.DataFrame([asdict(r) for r in records]).astype({"path": "string"})
    missing = int((manifest["size"] < 0).sum())
    if missing:
        log.warning("plate %s: %d object(s) missing from the bucket, recorded in the manifest", plate.plate, missing)
    write_parquet_atomic(manifest, out_manifest)
    write_parquet_atomic(sites, out_load_data)
    log.info("plate %s: %d objects, %.1f MB verified", plate.plate, len(records), manifest["size"].clip(0).sum() / 1e6)
    return sites


def plan_backend(client, plate: PlateRef, settings: FetchSettings, sources: Sequence[str]) -> dict:
    """The CellProfiler output ``fetch_backend`` would download: kind, objects, bytes; nothing without ``sources``."""
    if not sources:
        return {}
    backend = locate_backend(client, plate, settings, sources)
    return {
        "cellprofiler_source": backend.kind,
        "cellprofiler_objects": len(backend.objects),
        "cellprofiler_bytes": backend.size,
    }


def plan_plate(plate: PlateRef, settings: FetchSettings, out: Path, backend_sources: Sequence[str]) -> dict:
    """Count the objects and bytes a fetch would download, the CellProfiler output
    (looked for in ``backend_sources``) apart; downloads no image."""
    with retries_logged(f"plate {plate.plate} (plan)", settings.retry):
        client = settings.client()
        sites = plate_sites(client, plate, settings)
        records = head_objects(
            client,
            plate_locations(sites, plate),
            concurrency=settings.concurrency,
            retry=settings.retry,
            allow_missing=settings.allow_missing,
        )
        summary = {
            **asdict(plate),
            "sites": len(sites),
            "objects": len(records),
            "bytes": int(sum(r.size for r in records if not r.missing)),
            "missing": int(sum(r.missing for r in records)),
            **plan_backend(client, plate, settings, backend_sources),
        }
    write_text_atomic(json.dumps(summary, indent=2) + "\n", out)
    return summary


def summarize_plans(plan_files: Sequence[Path], out: Path) -> pd.DataFrame:
    """One table of all plates' plans, with a total row, written as TSV.

    ``objects`` and ``bytes`` count images and illumination files, the
    ``cellprofiler_*`` columns the CellProfiler output (empty for plans made
    without it); ``GB`` is everything a plate would download.
    """
    table = pd.DataFrame([json.loads(Path(p).read_text()) for p in plan_files])
    counted = [c for c in PLAN_COUNTS if c in table.columns]
    table[counted] = table[counted].astype("Int64")
    total = {"dataset": "total", **table[counted].sum()}
    table = pd.concat([table, pd.DataFrame([total]).astype({c: "Int64" for c in counted})], ignore_index=True)
    downloaded = table[[c for c in ("bytes", "cellprofiler_bytes") if c in counted]].sum(axis=1)
    table["GB"] = (downloaded.astype("float64") / 1e9).round(3)
    write_text_atomic(table.to_csv(sep="\t", index=False), out)
    return table
