"""The DINO stage: ``python -m workflow_scripts.dino`` (see ``workflow_scripts.stage``).

Reads ``--input plate=`` (a ``{plate}.ome.zarr``) and ``--input qc=``
(``qc/fields.parquet``: the fields' sites and which fields QC excludes);
writes ``--output wells=`` and ``--output fields=`` (``dino/wells.parquet``,
``dino/fields.parquet``). Settings: ``embedding``, ``gallery`` (for an
``s3://`` checkpoint), ``cache_dir``.
"""

from __future__ import annotations

import logging

from workflow_scripts.dino.model import prepare_model
from workflow_scripts.dino.output import STAGE, VERSIONED_PACKAGES, add_sites, stamp_plate
from workflow_scripts.dino.pipeline import PlateEmbeddings, RunOptions, embed_plate
from workflow_scripts.dino.preprocess import Recipe
from workflow_scripts.provenance import package_versions, write_table
from workflow_scripts.qc.fields import read_qc_fields
from workflow_scripts.stage import StageCall, run_stage

log = logging.getLogger("workflow_scripts.dino")


def dino(call: StageCall) -> None:
    """Embed one plate's fields and wells, leaving out the fields QC excludes."""
    embedding, gallery, plate = call.settings["embedding"], call.settings["gallery"], call.plate
    recipe = Recipe.from_config(embedding)
    options = RunOptions.from_config(embedding)
    qc = read_qc_fields(call.input("qc"), plate.plate)
    model, info = prepare_model(
        embedding["arch"],
        len(recipe.channels),
        embedding["checkpoint"],
        embedding["allow_random_weights"],
        call.settings["cache_dir"],
        gallery["endpoint_url"],
        gallery["anonymous"],
    )
    result = embed_plate(str(call.input("plate")), model, recipe, options, qc.excluded)
    provenance = {
        **info.as_dict(),
        "recipe": recipe.as_dict(),
        "versions": package_versions(VERSIONED_PACKAGES),
        "plate_zarr": str(call.input("plate")),
        "qc_fields": str(call.input("qc")),
        "qc_excluded_fields": len(qc.excluded),
        "wells_without_embedding": result.wells_without_embedding,
        "device": result.device,
        "precision": result.precision,
        "batch_size": options.batch_size,
    }
    fields = add_sites(result.fields, qc.sites, str(call.input("qc")))
    for table, name in ((fields, "fields"), (result.wells, "wells")):
        stamped = stamp_plate(table, plate.source, plate.batch, plate.plate, info.label)
        write_table(stamped, call.output(name), STAGE, provenance)
    _log_summary(plate.plate, result)


def _log_summary(plate: str, result: PlateEmbeddings) -> None:
    times = result.times
    log.info(
        "%s: %d fields, %d crops, %d wells in %.1f s (read %.1f s, preprocess %.1f s, model %.1f s) on %s/%s",
        plate,
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


def main(argv: list[str] | None = None) -> int:
    return run_stage("dino", {"dino": dino}, argv)


if __name__ == "__main__":
    raise SystemExit(main())
