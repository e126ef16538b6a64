"""The CellProfiler stage: ``python -m workflow_scripts.cellprofiler`` (see ``workflow_scripts.stage``).

Fetches the plate's CellProfiler output into the cache and writes its
manifest to ``--output backend=`` (``fetch/cellprofiler.parquet``); reads
``--input qc=`` (``qc/fields.parquet``: the fields QC excludes), and writes
``--output wells=`` (``cellprofiler/wells.parquet``). One job does both, so a
plate costs the scheduler one job less. ``--threads`` processes read a SQLite
backend. Settings: ``cellprofiler``, and ``fetch``, ``gallery``, ``cache_dir``
for the download.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection

from workflow_scripts.cellprofiler.aggregate import WellProfiles, aggregate_single_cells
from workflow_scripts.cellprofiler.analysis_csv import AnalysisCsvs
from workflow_scripts.cellprofiler.output import STAGE, VERSIONED_PACKAGES, nan_features, wells_table
from workflow_scripts.cellprofiler.qc_exclusion import SINGLE_CELL_KINDS, Site, exclusion_record
from workflow_scripts.cellprofiler.sqlite_backend import aggregate_sqlite
from workflow_scripts.cellprofiler.well_tables import read_well_table
from workflow_scripts.fetch.backend import LocalBackend, fetch_backend, read_backend_manifest
from workflow_scripts.fetch.plate import FetchSettings
from workflow_scripts.logs import some
from workflow_scripts.provenance import package_versions, write_table
from workflow_scripts.qc.fields import read_qc_fields
from workflow_scripts.stage import StageCall, run_stage

log = logging.getLogger("workflow_scripts.cellprofiler")


def build_profiles(
    backend: LocalBackend, operation: str, exclude: Collection[Site], label: str, workers: int
) -> WellProfiles:
    """Well profiles from whichever output was fetched, the ``exclude`` sites left out.

    Finished well tables are taken as they are: their aggregation was chosen
    by whoever made them, and the provenance says so.
    """
    if backend.kind == "sqlite":
        return aggregate_sqlite(backend.paths[0], label, operation, workers, exclude)
    if backend.kind == "analysis":
        folders = sorted({path.parent for path in backend.paths})
        return aggregate_single_cells(AnalysisCsvs(folders, label, exclude), operation)
    return read_well_table(backend.paths[0], backend.kind)


def cellprofiler(call: StageCall) -> None:
    """Fetch one plate's CellProfiler output and aggregate it to wells, without the fields QC excludes."""
    started = time.monotonic()
    plate, settings = call.plate, call.settings
    operation, manifest, qc_fields = settings["cellprofiler"]["operation"], call.output("backend"), call.input("qc")
    fetch_backend(plate, FetchSettings.from_config(settings), settings["cellprofiler"]["sources"], manifest)
    backend = read_backend_manifest(manifest, plate)
    excluded = read_qc_fields(qc_fields, plate.plate).excluded_sites
    label = f"plate {plate.plate}, {backend.location}"
    profiles = build_profiles(backend, operation, excluded, label, call.threads)
    nan = nan_features(profiles)
    warn_nan_features(plate.plate, nan)
    provenance = {
        **backend.provenance(),
        "manifest": str(manifest),
        "operation": operation if backend.kind in SINGLE_CELL_KINDS else "as stored in the source",
        "qc_fields": str(qc_fields),
        "qc_exclusion": exclusion_record(backend.kind, excluded, profiles.wells, profiles.fields_excluded, label),
        "wells": len(profiles.wells),
        "features": len(profiles.features),
        "nan_features": nan,
        "versions": package_versions(VERSIONED_PACKAGES),
    }
    out = call.output("wells")
    write_table(wells_table(profiles, plate.source, plate.batch, plate.plate), out, STAGE, provenance)
    log.info(
        "plate %s: %d wells x %d features from %s in %.1f s -> %s",
        plate.plate,
        len(profiles.wells),
        len(profiles.features),
        backend.kind,
        time.monotonic() - started,
        out,
    )


def warn_nan_features(plate: str, nan: dict) -> None:
    """Name the features left NaN in wells with cells, so a NaN in the output is never silent."""
    every, partly = nan["in_every_well"], nan["in_some_wells"]
    if every:
        log.warning(
            "plate %s: %d feature(s) have no value in any of the %d wells with cells, kept as NaN: %s",
            plate, len(every), nan["wells_with_cells"], some(every),
        )  # fmt: skip
    if partly:
        log.warning(
            "plate %s: %d feature(s) have no value in some wells with cells, NaN there: %s",
            plate, len(partly), some([f"{name} ({n} wells)" for name, n in partly.items()]),
        )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    return run_stage("cellprofiler", {"cellprofiler": cellprofiler}, argv)


if __name__ == "__main__":
    raise SystemExit(main())
