"""The report stage: ``python -m workflow_scripts.report`` (see ``workflow_scripts.stage``).

Writes ``--output report=`` (``{results_dir}/report/index.html``), one
self-contained page. Reads, per feature set, ``--input kpis=``,
``--input selected_method=``, ``--input drift=`` (each under
``collection/{features}/``) and ``--input corrected=``
(``collection/{features}/corrected/{method}.parquet``, every method); each
plate's files (QC, profiles, DINO provenance) are found from the plate
table, under the folder that holds the ``collection/`` inputs. Settings: the whole config; ``report`` holds the report's own keys.
"""

from __future__ import annotations

import logging
import time

import pandas as pd

from workflow_scripts.atomic import atomic_path
from workflow_scripts.plates import read_plate_table
from workflow_scripts.report.distributions import distribution_section
from workflow_scripts.report.drift import flagged_plates
from workflow_scripts.report.feature_set import feature_set_section
from workflow_scripts.report.html import render
from workflow_scripts.report.inputs import PlateFiles, collection_inputs, plate_files, read_table, results_root
from workflow_scripts.report.lineage import config_yaml, counts, dino_model, dino_records, plate_qc, versions
from workflow_scripts.report.qc import plate_qc_section
from workflow_scripts.report.umap import UmapOptions
from workflow_scripts.settings import schema
from workflow_scripts.stage import StageCall, run_stage

log = logging.getLogger("workflow_scripts.report")


def report(call: StageCall) -> None:
    """Build the report page from the run's outputs."""
    started = time.monotonic()
    settings, options = call.settings, call.settings["report"]
    features, methods = list(settings["features"]), list(settings["correction"]["methods"])
    evaluation = settings["evaluation"]
    table = read_plate_table(settings["plates"], settings["dataset"], settings["select"])
    collections = collection_inputs(call.inputs, features, methods)
    plates = plate_files(table, results_root(collections, settings["results_dir"]))
    shown = shown_plates(plates, [read_table(c.drift) for c in collections.values()], options["max_plates"])
    anchors = {plate: f"plate-{i}" for i, plate in enumerate(shown)}
    records = dino_records(plates) if "dino" in features else {}
    dino = dino_model(records) if "dino" in features else None
    random_weights = {name: name == "dino" and dino is not None and dino.random_weights for name in features}
    umap_options = UmapOptions(
        max_profiles=options["umap_max_profiles"],
        seed=options["seed"],
        moa_key=evaluation["moa_key"],
        replicate_key=evaluation["replicate_key"],
    )
    html = render(
        settings=settings,
        plates=plate_qc(plates, anchors),
        sources=counts(plates, "source"),
        batches=counts(plates, "batch"),
        shown=len(shown),
        dino=dino,
        versions=versions(list(collections.values()), records),
        config=config_yaml(settings),
        plate_sections=[plate_qc_section(plate, anchors[plate]) for plate in shown],
        distributions=[
            distribution_section(shown, name, evaluation["replicate_key"], random_weights[name]) for name in features
        ],
        feature_sets=[
            feature_set_section(collections[name], methods, umap_options, random_weights[name]) for name in features
        ],
        not_configured=[name for name in schema()["properties"]["features"]["items"]["enum"] if name not in features],
    )
    with atomic_path(call.output("report")) as partial:
        partial.write_text(html, encoding="utf-8")
        # A page to be read by people, not only by this user: atomic_path's temporary file is private.
        partial.chmod(0o644)
    log.info("report of %d plates (%d shown in full) in %.1f s", len(plates), len(shown), time.monotonic() - started)


def shown_plates(plates: list[PlateFiles], drift: list[pd.DataFrame | None], count: int) -> list[PlateFiles]:
    """The plates with full figures: those drift flagged first, then the rest, each in plate-table order."""
    flagged = flagged_plates(drift)
    return sorted(plates, key=lambda plate: (plate.source, plate.batch, plate.plate) not in flagged)[:count]


def main(argv: list[str] | None = None) -> int:
    return run_stage("report", {"report": report}, argv)


if __name__ == "__main__":
    raise SystemExit(main())
