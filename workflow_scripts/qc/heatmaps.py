"""Plate-layout heatmaps of QC metrics, one PNG per metric, for the report.

Each well shows the median over its fields (a mean for the nuclei proxy,
a count for flagged fields), drawn where the well sits on a 96- or 384-well
plate, so edge effects, dispensing stripes and dead wells stand out. Wells
without data are left blank.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from workflow_scripts.atomic import atomic_path
from workflow_scripts.wells import ROWS, split_well

PLATE_96 = (8, 12)
PLATE_384 = (16, 24)
# The metrics drawn, i.e. the files ``heatmap_{name}.png`` that QC writes.
HEATMAPS = ("focus", "nuclei", "intensity", "saturation", "flagged")


def plate_shape(wells: Sequence[str]) -> tuple[int, int]:
    """96-well layout when every well fits in it, else 384."""
    positions = [split_well(well) for well in wells]
    fits_96 = all(ROWS.index(row) < PLATE_96[0] and int(column) <= PLATE_96[1] for row, column in positions)
    return PLATE_96 if fits_96 else PLATE_384


def well_grid(per_well: pd.Series, shape: tuple[int, int]) -> np.ndarray:
    """(rows, columns) array of the per-well values, NaN where a well has none."""
    grid = np.full(shape, np.nan)
    for well, value in per_well.items():
        row, column = split_well(str(well))
        grid[ROWS.index(row), int(column) - 1] = value
    return grid


def write_heatmaps(table: pd.DataFrame, channels: Sequence[str], out_dir: str | Path, plate: str) -> list[Path]:
    """Write every ``heatmap_{name}.png`` for one plate's QC table; return their paths."""
    shape = plate_shape(table["Metadata_Well"].tolist())
    by_well = table.groupby("Metadata_Well")
    saturation = table[[f"{ch}_saturated_fraction" for ch in channels]].max(axis=1)
    panels = {
        "focus": [("focus (power log-log slope)", by_well["focus_plls"].median())],
        "nuclei": [("nuclei per field (estimate)", by_well["nuclei_count"].mean())],
        "intensity": [(f"{ch} median intensity", by_well[f"{ch}_p50"].median()) for ch in channels],
        "saturation": [("saturated pixel fraction (max channel)", saturation.groupby(table["Metadata_Well"]).max())],
        "flagged": [("fields failing QC", (~table["qc_pass"]).groupby(table["Metadata_Well"]).sum())],
    }
    paths = []
    for name in HEATMAPS:
        target = Path(out_dir) / f"heatmap_{name}.png"
        _draw(target, f"{plate}: {name}", [(title, well_grid(values, shape)) for title, values in panels[name]])
        paths.append(target)
    return paths


def _draw(target: Path, title: str, panels: list[tuple[str, np.ndarray]]) -> None:
    columns = min(len(panels), 3)
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(6.5 * columns, 4.2 * rows), squeeze=False)
    for ax, (panel_title, grid) in zip(axes.flat, panels):
        ax.set_facecolor("0.85")  # wells without data
        image = ax.imshow(np.ma.masked_invalid(grid), cmap="viridis", aspect="equal")
        ax.set_title(panel_title, fontsize=10)
        ax.set_xticks(range(grid.shape[1]), [str(c + 1) for c in range(grid.shape[1])], fontsize=6)
        ax.set_yticks(range(grid.shape[0]), list(ROWS[: grid.shape[0]]), fontsize=6)
        fig.colorbar(image, ax=ax, shrink=0.8)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.suptitle(title)
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
