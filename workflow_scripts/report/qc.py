"""A plate's QC in the report: the QC stage's heatmaps, its illumination maps, and the fields QC failed."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from workflow_scripts.report.figures import Image, figure_uri, new_figure, png_file_uri, text
from workflow_scripts.report.inputs import PlateFiles

# Fields listed per plate at most; the count of the rest is shown.
MAX_FIELD_ROWS = 100
# Illumination functions are smooth: a few hundred pixels a side show them fully.
ILLUM_PIXELS = 256
FIELD_COLUMNS = {
    "Metadata_Well": "well",
    "Metadata_Site": "site",
    "Metadata_Field": "field",
    "qc_reason": "reason",
    "qc_detail": "detail",
    "qc_excluded": "excluded",
}


@dataclass(frozen=True)
class FailedFields:
    """The fields of a plate that failed QC, with reasons and whether they were left out."""

    columns: list[str]
    rows: list[list[str]]
    total: int
    note: str


def heatmaps(plate: PlateFiles) -> tuple[list[Image], list[str]]:
    """The QC stage's plate heatmaps (``qc/heatmaps/heatmap_*.png``), and notes on any that are not PNG."""
    images, notes = [], []
    for path in sorted((plate.qc_folder / "heatmaps").glob("heatmap_*.png")):
        what = path.stem.removeprefix("heatmap_").replace("_", " ")
        uri = png_file_uri(path)
        if uri is None:
            notes.append(f"{path.name} is not a PNG image")
            continue
        images.append(Image(uri, f"{what} heatmap of plate {plate.plate}", what))
    if not images and not notes:
        notes.append(f"no QC heatmaps in {plate.qc_folder / 'heatmaps'}")
    return images, notes


def illumination(plate: PlateFiles) -> tuple[Image | None, str]:
    """One panel per channel of ``qc/illum/*.npy``, or None and why not."""
    paths = sorted((plate.qc_folder / "illum").glob("*.npy"))
    maps = {_channel(path, plate.plate): np.load(path, allow_pickle=False) for path in paths}
    maps = {name: array for name, array in maps.items() if array.ndim == 2 and array.size}
    if not maps:
        return None, f"no illumination functions in {plate.qc_folder / 'illum'}"
    figure = new_figure(2.6 * len(maps), 2.6)
    ranges = []
    for axes, (name, array) in zip(figure.subplots(1, len(maps), squeeze=False)[0], maps.items(), strict=True):
        step = max(1, max(array.shape) // ILLUM_PIXELS)
        shown = axes.imshow(array[::step, ::step], cmap="magma")
        axes.set_title(text(name), fontsize=9)
        axes.set_axis_off()
        figure.colorbar(shown, ax=axes, shrink=0.8)
        ranges.append(f"{name} {np.nanmin(array):.3g}–{np.nanmax(array):.3g}")
    caption = "illumination functions per channel (min–max: " + ", ".join(ranges) + ")"
    return Image(figure_uri(figure), f"illumination functions of plate {plate.plate}", caption), ""


def _channel(path: Path, plate: str) -> str:
    """``{plate}_Illum{channel}.npy`` (the gallery's names) -> the channel; other names are kept."""
    match = re.fullmatch(rf"{re.escape(plate)}_Illum(.+)", path.stem)
    return match.group(1) if match else path.stem


def failed_fields(plate: PlateFiles) -> FailedFields | None:
    """Fields that failed QC (``qc_pass`` false, or excluded) with their reasons; None without the table."""
    if not plate.qc_fields.is_file():
        return None
    table = pd.read_parquet(plate.qc_fields)
    failed = pd.Series(False, index=table.index)
    if "qc_pass" in table:
        failed |= ~table["qc_pass"].astype(bool)
    if "qc_excluded" in table:
        failed |= table["qc_excluded"].astype(bool)
    shown = table.loc[failed, [c for c in FIELD_COLUMNS if c in table.columns]]
    excluded = int(table["qc_excluded"].sum()) if "qc_excluded" in table else 0
    note = f"{int(failed.sum())} of {len(table)} fields failed QC, {excluded} excluded from profiles"
    rows = [[_cell(value) for value in row] for row in shown.head(MAX_FIELD_ROWS).itertuples(index=False)]
    return FailedFields([FIELD_COLUMNS[c] for c in shown.columns], rows, len(shown), note)


def _cell(value: object) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    return "" if pd.isna(value) else str(value)


@dataclass(frozen=True)
class PlateQcSection:
    """Everything the report shows of one plate's QC."""

    plate: PlateFiles
    anchor: str
    heatmaps: list[Image]
    illumination: Image | None
    failed: FailedFields | None
    notes: list[str]


def plate_qc_section(plate: PlateFiles, anchor: str) -> PlateQcSection:
    """Heatmaps, illumination maps and failed fields of ``plate``, with a note for each that is absent."""
    images, notes = heatmaps(plate)
    illum, illum_note = illumination(plate)
    failed = failed_fields(plate)
    notes += [illum_note] if illum_note else []
    notes += [] if failed is not None else [f"{plate.qc_fields} not found"]
    return PlateQcSection(plate, anchor, images, illum, failed, notes)
