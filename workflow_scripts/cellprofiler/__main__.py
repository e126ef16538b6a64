"""The CellProfiler stage: ``python -m workflow_scripts.cellprofiler`` (see ``workflow_scripts.stage``).

Reads ``--input backend=`` (``fetch/cellprofiler.parquet``: the plate's
CellProfiler output, fetched into the cache) and ``--input qc=``
(``qc/fields.parquet``: the fields QC excludes), and writes ``--output wells=``
(``cellprofiler/wells.parquet``). ``--threads`` processes read a SQLite
backend. Settings: ``cellprofiler``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection

from workflow_scripts.cellprofiler.aggregate import WellProfiles, aggregate_single_cells
from workflow_scripts.cellprofiler.analysis_csv import AnalysisCsvs
from workflow_scripts.cellprofiler.output import STAGE, VERSIONED_PACKAGES, wells_table
from workflow_scripts.cellprofiler.qc_exclusion import SINGLE_CELL_KINDS, Site, exclusion_record
from workflow_scripts.cellprofiler.sqlite_backend import aggregate_sqlite
from workflow_scripts.cellprofiler.well_tables import read_well_table
from workflow_scripts.fetch.backend import LocalBackend, read_backend_manifest
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
    """Aggregate one plate's fetched CellProfiler output to wells, without the fields QC excludes."""
    started = time.monotonic()
    plate, operation = call.plate, call.settings["cellprofiler"]["operation"]
    manifest, qc_fields = call.input("backend"), call.input("qc")
    backend = read_backend_manifest(manifest, plate)
    excluded = read_qc_fields(qc_fields, plate.plate).excluded_sites
    label = f"plate {plate.plate}, {backend.location}"
    profiles = build_profiles(backend, operation, excluded, label, call.threads)
    provenance = {
        **backend.provenance(),
        "manifest": str(manifest),
        "operation": operation if backend.kind in SINGLE_CELL_KINDS else "as stored in the source",
        "qc_fields": str(qc_fields),
        "qc_exclusion": exclusion_record(backend.kind, excluded, profiles.wells, profiles.fields_excluded, label),
        "wells": len(profiles.wells),
        "features": len(profiles.features),
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


def main(argv: list[str] | None = None) -> int:
    return run_stage("cellprofiler", {"cellprofiler": cellprofiler}, argv)


if __name__ == "__main__":
    raise SystemExit(main())
