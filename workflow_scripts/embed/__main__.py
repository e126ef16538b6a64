"""Command line of the embedding stage: one OME-Zarr plate in, ``dino/wells.parquet`` and ``dino/fields.parquet`` out.

Example::

    python -m workflow_scripts.embed --plate-zarr P.ome.zarr --out-wells dino/wells.parquet \\
        --out-fields dino/fields.parquet --source source_4 --batch B1 --plate P \\
        --checkpoint s3://bucket/dino.pth --cache-dir cache
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from workflow_scripts.embed.model import prepare_model
from workflow_scripts.embed.outputs import (
    add_sites,
    package_versions,
    stamp_plate,
    write_table,
)
from workflow_scripts.embed.pipeline import PlateEmbeddings, RunOptions, embed_plate
from workflow_scripts.embed.preprocess import (
    AGGREGATIONS,
    DEFAULT_CHANNELS,
    NORMALIZATIONS,
    Recipe,
    default_statistics,
)
from workflow_scripts.embed.qc_fields import read_qc_fields
from workflow_scripts.embed.vit import ARCHS
from workflow_scripts.logs import configure_logging

log = logging.getLogger("workflow_scripts.embed")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m workflow_scripts.embed", description=__doc__.splitlines()[0])
    io = parser.add_argument_group("inputs and outputs")
    io.add_argument("--plate-zarr", required=True, help="the plate's OME-Zarr (NGFF 0.5 or 0.4)")
    io.add_argument("--out-wells", required=True, help="well embeddings parquet to write")
    io.add_argument("--out-fields", required=True, help="field embeddings parquet to write")
    io.add_argument("--source", required=True, help="Metadata_Source stamped into the tables")
    io.add_argument("--batch", required=True, help="Metadata_Batch stamped into the tables")
    io.add_argument("--plate", required=True, help="Metadata_Plate stamped into the tables")
    io.add_argument("--qc-fields", help="qc/fields.parquet: sites of the fields and QC flags")
    io.add_argument("--exclude-flagged", action="store_true", help="skip fields with qc_pass False")
    model = parser.add_argument_group("model")
    model.add_argument("--checkpoint", help="DINO checkpoint or state dict: local path or s3:// URI")
    model.add_argument("--allow-random-weights", action="store_true", help="run without a checkpoint")
    model.add_argument("--arch", choices=sorted(ARCHS), default="vit_small")
    model.add_argument("--cache-dir", help="where an s3:// checkpoint is downloaded to")
    model.add_argument("--endpoint-url", help="S3 endpoint for an s3:// checkpoint (default: AWS)")
    model.add_argument("--signed", action="store_true", help="sign S3 requests with the AWS credentials")
    recipe = parser.add_argument_group("recipe")
    recipe.add_argument("--channels", nargs="+", default=list(DEFAULT_CHANNELS), help="model input channel order")
    recipe.add_argument("--mean", nargs="+", type=float, help="per-channel means (default: CellPaintSSL, by stain)")
    recipe.add_argument("--std", nargs="+", type=float, help="per-channel stds (default: CellPaintSSL, by stain)")
    recipe.add_argument("--normalization", choices=NORMALIZATIONS, default="dataset")
    recipe.add_argument("--aggregation", choices=AGGREGATIONS, default="mean")
    run = parser.add_argument_group("execution")
    run.add_argument("--batch-size", type=int, default=256, help="crops per model batch")
    run.add_argument("--workers", type=int, default=8, help="threads reading fields ahead")
    run.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    run.add_argument("--precision", choices=("auto", "float32", "bfloat16"), default="auto")
    args = parser.parse_args(argv)
    if args.exclude_flagged and not args.qc_fields:
        parser.error("--exclude-flagged needs --qc-fields")
    if (args.mean is None) != (args.std is None):
        parser.error("give --mean and --std together")
    if args.batch_size < 1 or args.workers < 1:
        parser.error("--batch-size and --workers must be positive")
    return args


def recipe_from_args(args: argparse.Namespace) -> Recipe:
    channels = tuple(args.channels)
    mean, std = (tuple(args.mean), tuple(args.std)) if args.mean else default_statistics(channels)
    return Recipe(channels=channels, mean=mean, std=std, normalization=args.normalization, aggregation=args.aggregation)


def provenance(args: argparse.Namespace, recipe: Recipe, model_info: dict, result: PlateEmbeddings) -> dict:
    """Everything needed to tell how the tables were made."""
    return {
        **model_info,
        "recipe": recipe.as_dict(),
        "versions": package_versions(),
        "plate_zarr": str(args.plate_zarr),
        "qc_fields": args.qc_fields,
        "exclude_flagged": args.exclude_flagged,
        "wells_without_embedding": result.wells_without_embedding,
        "device": result.device,
        "precision": result.precision,
        "batch_size": args.batch_size,
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging()
    recipe = recipe_from_args(args)
    qc = read_qc_fields(args.qc_fields, args.plate) if args.qc_fields else None
    model, info = prepare_model(
        args.arch,
        len(recipe.channels),
        args.checkpoint,
        args.allow_random_weights,
        args.cache_dir,
        args.endpoint_url,
        not args.signed,
    )
    exclude = qc.flagged if (qc and args.exclude_flagged) else frozenset()
    options = RunOptions(args.batch_size, args.workers, args.device, args.precision)
    result = embed_plate(args.plate_zarr, model, recipe, options, exclude)
    fields = add_sites(result.fields, qc.sites, args.qc_fields) if qc else result.fields
    meta = provenance(args, recipe, info.as_dict(), result)
    write_table(stamp_plate(fields, args.source, args.batch, args.plate, info.label), args.out_fields, meta)
    write_table(stamp_plate(result.wells, args.source, args.batch, args.plate, info.label), args.out_wells, meta)
    times = result.times
    log.info(
        "%s: %d fields, %d crops, %d wells in %.1f s (read %.1f s, preprocess %.1f s, model %.1f s) on %s/%s",
        args.plate,
        result.n_fields_read,
        result.n_crops_kept,
        len(result.wells),
        times.wall,
        times.read,
        times.preprocess,
        times.model,
        result.device,
        result.precision,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
