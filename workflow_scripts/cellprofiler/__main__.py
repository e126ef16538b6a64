"""Command line of the CellProfiler stage: one plate's well profiles.

    python -m workflow_scripts.cellprofiler --bucket cellpainting-gallery \\
        --prefix cpg0016-jump/source_4 --batch 2021_04_26_Batch1 --plate BR00117035 \\
        --cache-dir cache --out results/.../cellprofiler/wells.parquet \\
        --metadata-source source_4
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Sequence
from pathlib import Path

from workflow_scripts.cellprofiler.aggregate import (
    OPERATIONS,
    WellProfiles,
    aggregate_single_cells,
)
from workflow_scripts.cellprofiler.analysis_csv import AnalysisCsvs
from workflow_scripts.cellprofiler.output import wells_table, write_wells
from workflow_scripts.cellprofiler.sources import (
    DEFAULT_ORDER,
    KINDS,
    FetchedSource,
    fetch_source,
)
from workflow_scripts.cellprofiler.sqlite_backend import aggregate_sqlite
from workflow_scripts.cellprofiler.well_tables import read_well_table
from workflow_scripts.logs import configure_logging
from workflow_scripts.s3 import make_client

log = logging.getLogger("workflow_scripts.cellprofiler")


def build_profiles(fetched: FetchedSource, operation: str, plate: str, workers: int = 1) -> WellProfiles:
    """Well profiles from whichever source was fetched.

    Finished well tables are taken as they are: their aggregation was chosen
    by whoever made them, and the provenance says so.
    """
    label = f"plate {plate}, s3://{fetched.bucket}/{fetched.key}"
    if fetched.kind == "sqlite":
        return aggregate_sqlite(fetched.paths[0], label, operation, workers)
    if fetched.kind == "analysis":
        return aggregate_single_cells(AnalysisCsvs(fetched.paths, label), operation)
    return read_well_table(fetched.paths[0], fetched.kind)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Every path and parameter is explicit: the Snakemake rule passes them all."""
    parser = argparse.ArgumentParser(prog="python -m workflow_scripts.cellprofiler", description=__doc__.splitlines()[0])
    parser.add_argument("--bucket", default="cellpainting-gallery")
    parser.add_argument("--endpoint-url", default=None, help="S3 endpoint (default: AWS, or $AWS_ENDPOINT_URL)")
    access = parser.add_mutually_exclusive_group()
    access.add_argument("--anonymous", dest="anonymous", action="store_true", default=True, help="unsigned requests (default)")
    access.add_argument("--signed", dest="anonymous", action="store_false", help="signed requests with the usual AWS credentials")
    parser.add_argument("--prefix", required=True, help="dataset/source prefix, e.g. cpg0016-jump/source_4")
    parser.add_argument("--batch", required=True)
    parser.add_argument("--plate", required=True)
    parser.add_argument("--sources", nargs="+", choices=KINDS, default=list(DEFAULT_ORDER), help="sources in order of preference")
    parser.add_argument("--operation", choices=OPERATIONS, default="median")
    parser.add_argument("--cache-dir", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--metadata-source", required=True, help="Metadata_Source to stamp")
    parser.add_argument("--metadata-batch", default=None, help="Metadata_Batch to stamp (default: --batch)")
    parser.add_argument("--metadata-plate", default=None, help="Metadata_Plate to stamp (default: --plate)")
    parser.add_argument("--workers", type=int, default=1, help="processes reading a SQLite backend")
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Fetch, aggregate and write one plate; any bad input raises, naming it."""
    args = parse_args(argv)
    configure_logging(args.log_level)
    started = time.monotonic()
    client = make_client(args.endpoint_url, args.anonymous)
    fetched = fetch_source(client, args.bucket, args.prefix, args.batch, args.plate, args.cache_dir, args.sources)
    profiles = build_profiles(fetched, args.operation, args.plate, args.workers)
    single_cells = fetched.kind in ("sqlite", "analysis")
    provenance = {
        **fetched.provenance(),
        "operation": args.operation if single_cells else "as stored in the source",
        "wells": len(profiles.wells),
        "features": len(profiles.features),
    }
    table = wells_table(profiles, args.metadata_source, args.metadata_batch or args.batch, args.metadata_plate or args.plate)
    write_wells(table, provenance, args.out)
    log.info(
        "plate %s: %d wells x %d features from %s in %.1f s -> %s",
        args.plate, len(profiles.wells), len(profiles.features), fetched.kind, time.monotonic() - started, args.out,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
