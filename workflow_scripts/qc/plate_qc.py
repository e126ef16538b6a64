"""The QC stage for one plate: metrics per field (in parallel per well),
flags, the fields table, heatmaps and the plate's illumination functions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from workflow_scripts.atomic import write_parquet_atomic
from workflow_scripts.errors import InputError
from workflow_scripts.illumination import compute_illumination, write_illumination
from workflow_scripts.omezarr.parallel import WorkerPool
from workflow_scripts.omezarr.reader import OmeZarrPlate, open_plate
from workflow_scripts.qc.flags import flag_fields
from workflow_scripts.qc.heatmaps import write_heatmaps
from workflow_scripts.qc.metrics import field_metrics
from workflow_scripts.qc.thresholds import QcThresholds

LOG = logging.getLogger(__name__)

FIELDS_FILE = "fields.parquet"
ILLUM_DIR = "illum"
HEATMAP_DIR = "heatmaps"
# Illumination is computed from this pyramid level (4x smaller per side):
# plenty for a function smoothed over ~100 full-resolution pixels.
ILLUM_LEVEL = 2
LEADING_COLUMNS = [
    "Metadata_Source",
    "Metadata_Batch",
    "Metadata_Plate",
    "Metadata_Well",
    "Metadata_Site",
    "Metadata_Field",
    "qc_pass",
    "qc_reason",
    "qc_detail",
    "qc_excluded",
    "conversion_reason",
    "conversion_detail",
]


@dataclass(frozen=True)
class WellQcJob:
    plate: Path
    well: str
    thresholds: QcThresholds


def well_rows(job: WellQcJob) -> list[dict]:
    """Status and metrics of every field of one well (no metrics for a field with an unreadable channel)."""
    plate = open_plate(job.plate)
    rows = []
    for info in plate.fields(job.well):
        row = info.as_row()
        if info.ok:
            row |= field_metrics(plate.read_field(info.well, info.field), plate.channels, job.thresholds)
        rows.append(row)
    return rows


def run_plate_qc(
    plate_path: str | Path,
    out_dir: str | Path,
    thresholds: QcThresholds,
    exclude_flagged: bool,
    illum_filter_size: float,
    workers: int = 1,
) -> pd.DataFrame:
    """QC one plate into ``out_dir``; raises (naming the plate) if no field passes."""
    out_dir = Path(out_dir)
    with WorkerPool(workers) as pool:
        plate = open_plate(plate_path)
        _check_channels(plate, thresholds)
        jobs = [WellQcJob(Path(plate_path), well, thresholds) for well in plate.wells]
        rows = [row for well in pool.map(well_rows, jobs) for row in well]
    table = flag_fields(_fields_table(plate, rows), plate.channels, thresholds)
    table["qc_excluded"] = exclude_flagged & ~table["qc_pass"]
    table = table[LEADING_COLUMNS + [c for c in table.columns if c not in LEADING_COLUMNS]]
    _log_flags(plate.name, table, exclude_flagged)
    if not table["qc_pass"].any():
        raise InputError(f"plate {plate.name}: every one of its {len(table)} fields fails QC: {_reason_counts(table)}")
    write_parquet_atomic(table, out_dir / FIELDS_FILE)
    write_heatmaps(table, plate.channels, out_dir / HEATMAP_DIR, plate.name)
    _write_plate_illumination(plate, table, out_dir / ILLUM_DIR, illum_filter_size, workers)
    return table


def _check_channels(plate: OmeZarrPlate, thresholds: QcThresholds) -> None:
    for role, channel in [("focus", thresholds.focus_channel), ("DNA", thresholds.dna_channel)]:
        if channel not in plate.channels:
            raise InputError(f"plate {plate.name}: {role} channel {channel!r} is not among {plate.channels}")


def _fields_table(plate: OmeZarrPlate, rows: list[dict]) -> pd.DataFrame:
    """Rows plus plate metadata; text metadata, integer field index, float metrics."""
    table = pd.DataFrame(rows)
    for column, value in plate.provenance["plate"].items():
        table[column] = value
    metrics = [c for c in table.columns if not c.startswith(("Metadata_", "conversion_"))]
    return table.astype({**{c: "float64" for c in metrics}, "Metadata_Field": "int64"})


def _log_flags(plate: str, table: pd.DataFrame, exclude_flagged: bool) -> None:
    flagged = table[~table["qc_pass"]]
    for row in flagged.itertuples():
        LOG.warning("plate %s well %s site %s fails QC: %s", plate, row.Metadata_Well, row.Metadata_Site, row.qc_detail)
    action = "excluded downstream" if exclude_flagged else "kept downstream (qc.exclude_flagged is off)"
    LOG.info("plate %s: %d of %d fields fail QC %s, %s", plate, len(flagged), len(table), _reason_counts(table), action)


def _reason_counts(table: pd.DataFrame) -> dict[str, int]:
    """How many fields have each reason (a field can have several)."""
    reasons = table.loc[~table["qc_pass"], "qc_reason"].str.split("; ").explode()
    return reasons.value_counts().sort_index().to_dict()


def _write_plate_illumination(
    plate: OmeZarrPlate, table: pd.DataFrame, out_dir: Path, filter_size: float, workers: int
) -> None:
    """The plate's illumination functions beside its QC: the gallery's, or computed from passing fields."""
    gallery = plate.illumination()
    if gallery is not None:
        illum = [gallery[channel] for channel in plate.channels]
        info = {"source": "gallery", **plate.provenance["illumination"]}
    else:
        level = min(ILLUM_LEVEL, plate.levels - 1)
        passing = table[table["qc_pass"]]
        fields = plate.lazy_fields(list(zip(passing["Metadata_Well"], passing["Metadata_Field"])), level)
        illum = compute_illumination(fields, plate.field_shape, filter_size, workers)
        info = {
            "source": "computed",
            "fields": len(passing),
            "pyramid_level": level,
            "median_filter_size": filter_size,
            "rescaled_by": "2nd percentile (robust minimum)",
        }
        LOG.info("plate %s: no gallery illumination; computed from %d passing fields", plate.name, len(passing))
    write_illumination(out_dir, plate.name, plate.channels, list(illum), info)
