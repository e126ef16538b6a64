"""CLI of the conversion stage: ``python -m workflow_scripts.omezarr``.

Called by ``rules/convert.smk`` once per plate. Exit status 1 with the
reason on stderr when the plate cannot be converted at all.
"""

from __future__ import annotations

import argparse
import logging
import sys

from workflow_scripts.channels import CELL_PAINTING_CHANNELS
from workflow_scripts.logs import configure_logging
from workflow_scripts.omezarr.options import NGFF_VERSIONS, ConversionOptions
from workflow_scripts.omezarr.writer import convert_plate

DEFAULT_CHANNELS = CELL_PAINTING_CHANNELS


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m workflow_scripts.omezarr", description=__doc__)
    parser.add_argument("--load-data", required=True, help="the plate's load_data.parquet")
    parser.add_argument("--cache-dir", required=True, help="local mirror of the fetched S3 objects")
    parser.add_argument("--output", required=True, help="the plate to write, {plate}.ome.zarr")
    parser.add_argument("--channels", nargs="+", default=list(DEFAULT_CHANNELS), help="channel order of the arrays")
    defaults = ConversionOptions()
    parser.add_argument("--ngff-version", choices=NGFF_VERSIONS, default=defaults.ngff_version)
    parser.add_argument("--pyramid-levels", type=int, default=defaults.pyramid_levels)
    parser.add_argument(
        "--compression-level", type=int, default=defaults.compression_level, help="blosc-zstd clevel 1..9"
    )
    parser.add_argument("--shard-per-field", action=argparse.BooleanOptionalAction, default=defaults.shard_per_field)
    parser.add_argument(
        "--apply-illumination",
        action=argparse.BooleanOptionalAction,
        default=defaults.apply_illumination,
        help="write raw / illum instead of raw pixels",
    )
    parser.add_argument("--workers", type=int, default=defaults.workers, help="processes, one well each at a time")
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging(args.log_level)
    try:
        options = ConversionOptions(
            ngff_version=args.ngff_version,
            pyramid_levels=args.pyramid_levels,
            compression_level=args.compression_level,
            shard_per_field=args.shard_per_field,
            apply_illumination=args.apply_illumination,
            workers=args.workers,
        )
        convert_plate(args.load_data, args.cache_dir, args.output, args.channels, options)
    except ValueError as error:
        logging.getLogger("workflow_scripts.omezarr").error("%s", error)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
