"""CLI of the QC stage: ``python -m workflow_scripts.qc``.

Called by ``rules/qc.smk`` once per plate. Writes into ``--out-dir``:
``fields.parquet``, ``heatmap_{focus,nuclei,intensity,saturation,flagged}.png``
and ``illum/{plate}_Illum{Ch}.npy`` + ``illum/illum.json``.
"""

from __future__ import annotations

import argparse
import logging
import sys

from workflow_scripts.logs import configure_logging
from workflow_scripts.qc.plate_qc import run_plate_qc
from workflow_scripts.qc.thresholds import QcThresholds


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = QcThresholds()
    parser = argparse.ArgumentParser(prog="python -m workflow_scripts.qc", description=__doc__)
    parser.add_argument("--plate", required=True, help="the converted {plate}.ome.zarr")
    parser.add_argument("--out-dir", required=True, help="the plate's qc/ folder")
    parser.add_argument("--focus-channel", default=defaults.focus_channel)
    parser.add_argument("--dna-channel", default=defaults.dna_channel, help="channel for foreground and nuclei")
    parser.add_argument(
        "--focus-tolerance",
        type=float,
        default=defaults.focus_tolerance,
        help="flag fields whose power log-log slope is this far below the plate median",
    )
    parser.add_argument("--saturation-level", type=int, default=defaults.saturation_level)
    parser.add_argument("--max-saturated-fraction", type=float, default=defaults.max_saturated_fraction)
    parser.add_argument("--min-nucleus-area", type=int, default=defaults.min_nucleus_area, help="pixels")
    parser.add_argument("--illum-filter-size", type=float, default=100.0, help="median filter width, pixels")
    parser.add_argument("--exclude-flagged", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging(args.log_level)
    try:
        thresholds = QcThresholds(
            focus_channel=args.focus_channel,
            dna_channel=args.dna_channel,
            focus_tolerance=args.focus_tolerance,
            saturation_level=args.saturation_level,
            max_saturated_fraction=args.max_saturated_fraction,
            min_nucleus_area=args.min_nucleus_area,
        )
        run_plate_qc(args.plate, args.out_dir, thresholds, args.exclude_flagged, args.illum_filter_size, args.workers)
    except ValueError as error:
        logging.getLogger("workflow_scripts.qc").error("%s", error)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
