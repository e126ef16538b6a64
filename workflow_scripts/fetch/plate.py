"""The fetch stage: a plate's LoadData, images and illumination files from S3.

``python -m workflow_scripts.fetch plate ...`` writes ``load_data.parquet``
(the normalised, sample-restricted LoadData) and ``fetch/manifest.parquet``
(every object with its verified size and ETag); ``... plan ...`` writes the
object count and bytes of a plate without downloading any image.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from workflow_scripts.atomic import write_parquet_atomic, write_text_atomic
from workflow_scripts.fetch_objects import (
    FetchError,
    ObjectRecord,
    RetryPolicy,
    download_objects,
    head_objects,
)
from workflow_scripts.gallery import PlateRef
from workflow_scripts.load_data import (
    LoadDataError,
    image_urls,
    normalize_load_data,
    read_load_data_file,
    restrict_sample,
)
from workflow_scripts.logs import configure_logging
from workflow_scripts.s3 import S3Location, make_client, parse_s3_url

log = logging.getLogger("workflow_scripts.fetch")


@dataclass(frozen=True)
class FetchSettings:
    """What the config says about fetching (``gallery.*``, ``sample.*``, ``fetch.*``)."""

    bucket: str
    cache_dir: Path
    channels: Sequence[str]
    endpoint_url: str | None = None
    anonymous: bool = True
    wells: Sequence[str] = field(default_factory=list)
    sites: Sequence[str] = field(default_factory=list)
    concurrency: int = 32
    max_attempts: int = 8
    illum: bool = True
    allow_missing: bool = False

    @property
    def retry(self) -> RetryPolicy:
        return RetryPolicy(max_attempts=self.max_attempts)


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


def fetch_plate(plate: PlateRef, settings: FetchSettings, out_load_data: Path, out_manifest: Path) -> pd.DataFrame:
    """Download every object the plate's sampled sites name; write both outputs."""
    client = make_client(settings.endpoint_url, settings.anonymous, settings.concurrency)
    sites = plate_sites(client, plate, settings)
    locations = [parse_s3_url(url) for url in image_urls(sites)]
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
    except FetchError as error:
        raise FetchError(f"plate {plate.plate}: {error}") from error
    manifest = pd.DataFrame([asdict(r) for r in records]).astype({"path": "string"})
    missing = int((manifest["size"] < 0).sum())
    if missing:
        log.warning("plate %s: %d object(s) missing from the bucket, recorded in the manifest", plate.plate, missing)
    write_parquet_atomic(manifest, out_manifest)
    write_parquet_atomic(sites, out_load_data)
    log.info("plate %s: %d objects, %.1f MB verified", plate.plate, len(records), manifest["size"].clip(0).sum() / 1e6)
    return sites


def plan_plate(plate: PlateRef, settings: FetchSettings, out: Path) -> dict:
    """Count the objects and bytes a fetch would download; downloads no image."""
    client = make_client(settings.endpoint_url, settings.anonymous, settings.concurrency)
    sites = plate_sites(client, plate, settings)
    locations = [parse_s3_url(url) for url in image_urls(sites)]
    records = head_objects(
        client, locations, concurrency=settings.concurrency, retry=settings.retry, allow_missing=settings.allow_missing
    )
    summary = {
        **asdict(plate),
        "sites": len(sites),
        "objects": len(records),
        "bytes": int(sum(r.size for r in records if not r.missing)),
        "missing": int(sum(r.missing for r in records)),
    }
    write_text_atomic(json.dumps(summary, indent=2) + "\n", out)
    return summary


def summarize_plans(plan_files: Sequence[Path], out: Path) -> pd.DataFrame:
    """One table of all plates' plans, with a total row, written as TSV."""
    table = pd.DataFrame([json.loads(Path(p).read_text()) for p in plan_files])
    total = {"dataset": "total", "sites": table["sites"].sum(), "objects": table["objects"].sum()}
    table = pd.concat([table, pd.DataFrame([{**total, "bytes": table["bytes"].sum()}])], ignore_index=True)
    table["GB"] = (table["bytes"] / 1e9).round(3)
    write_text_atomic(table.fillna("").to_csv(sep="\t", index=False), out)
    return table


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m workflow_scripts.fetch", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("plate", "plan"):
        cmd = sub.add_parser(name)
        for option in ("--dataset", "--source", "--batch", "--plate", "--bucket", "--cache-dir"):
            cmd.add_argument(option, required=True)
        cmd.add_argument("--channels", nargs="+", required=True)
        cmd.add_argument("--endpoint-url", default=None)
        cmd.add_argument("--signed", action="store_true", help="sign requests with the AWS credentials")
        cmd.add_argument("--wells", nargs="*", default=[])
        cmd.add_argument("--sites", nargs="*", default=[])
        cmd.add_argument("--concurrency", type=int, default=32)
        cmd.add_argument("--max-attempts", type=int, default=8)
        cmd.add_argument("--no-illum", action="store_true")
        cmd.add_argument("--allow-missing", action="store_true")
    sub.choices["plate"].add_argument("--out-load-data", type=Path, required=True)
    sub.choices["plate"].add_argument("--out-manifest", type=Path, required=True)
    sub.choices["plan"].add_argument("--out", type=Path, required=True)
    summary = sub.add_parser("summary")
    summary.add_argument("plans", nargs="+", type=Path)
    summary.add_argument("--out", type=Path, required=True)
    return parser


def _settings(args: argparse.Namespace) -> FetchSettings:
    return FetchSettings(
        bucket=args.bucket,
        cache_dir=Path(args.cache_dir),
        channels=args.channels,
        endpoint_url=args.endpoint_url or None,
        anonymous=not args.signed,
        wells=args.wells,
        sites=args.sites,
        concurrency=args.concurrency,
        max_attempts=args.max_attempts,
        illum=not args.no_illum,
        allow_missing=args.allow_missing,
    )


def main(argv: Sequence[str] | None = None) -> int:
    configure_logging()
    args = _parser().parse_args(argv)
    if args.command == "summary":
        print(summarize_plans(args.plans, args.out).to_string(index=False))
        return 0
    plate = PlateRef(args.dataset, args.source, args.batch, args.plate)
    try:
        if args.command == "plate":
            fetch_plate(plate, _settings(args), args.out_load_data, args.out_manifest)
        else:
            plan_plate(plate, _settings(args), args.out)
    except (FetchError, LoadDataError) as error:
        log.error("%s", error)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
