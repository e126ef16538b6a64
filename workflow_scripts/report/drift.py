"""Drift of the negative controls across plates, in acquisition order, with the flagged plates marked.

``drift.parquet`` holds one row per plate: the distance of its negative
controls' centroid from the run's, a robust z-score, and whether it was
flagged; plates without controls have no distance and say why in ``note``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from workflow_scripts.report.figures import (
    Image,
    Legend,
    category_colours,
    colour_of,
    figure_uri,
    legend,
    new_figure,
    text,
)

COLUMNS = {
    "order": "order",
    "acquired": "acquired",
    "Metadata_Source": "source",
    "Metadata_Batch": "batch",
    "Metadata_Plate": "plate",
    "n_controls": "controls",
    "centroid_distance": "centroid distance",
    "dispersion": "dispersion",
    "robust_z": "robust z",
    "flagged": "flagged",
    "note": "note",
}
FLAG_COLOUR = "#d62728"
# Flagged plates are named on the plot up to this many; the table names them all.
MAX_NAMED = 20


@dataclass(frozen=True)
class Drift:
    """The drift figure (None without any distance), its batch legend and the per-plate table."""

    figure: Image | None
    legend: Legend
    columns: list[str]
    rows: list[tuple[bool, list[str]]]
    flagged: int


def flagged_plates(tables: Sequence[pd.DataFrame | None]) -> set[tuple[str, str, str]]:
    """(source, batch, plate) of every plate some feature set's drift flagged: these get figures first."""
    keys = ["Metadata_Source", "Metadata_Batch", "Metadata_Plate"]
    return {
        tuple(str(value) for value in row)
        for table in tables
        if table is not None and "flagged" in table and set(keys) <= set(table.columns)
        for row in table.loc[table["flagged"].fillna(False).astype(bool), keys].itertuples(index=False)
    }


def drift(table: pd.DataFrame, features: str, random_weights: bool) -> Drift:
    """Centroid distance by plate in acquisition order; flagged plates ringed in red and named."""
    table = table.sort_values("order", kind="stable").reset_index(drop=True)
    flagged = table["flagged"].fillna(False).astype(bool) if "flagged" in table else pd.Series(False, index=table.index)
    batches = table.get("Metadata_Batch", pd.Series("", index=table.index)).fillna("").astype(str)
    colours = category_colours(batches)
    distance = pd.to_numeric(table["centroid_distance"], errors="coerce")
    shown = distance.notna().to_numpy()
    figure = None
    if shown.any():
        figure = _figure(table, distance, flagged, batches, colours, shown, features, random_weights)
    columns = [c for c in COLUMNS if c in table.columns]
    rows = [
        (bool(flag), [_cell(value) for value in row])
        for flag, row in zip(flagged, table[columns].itertuples(index=False), strict=True)
    ]
    return Drift(
        figure, Legend("batch", legend(batches, colours)), [COLUMNS[c] for c in columns], rows, int(flagged.sum())
    )


def _figure(
    table: pd.DataFrame,
    distance: pd.Series,
    flagged: pd.Series,
    batches: pd.Series,
    colours: dict[str, str],
    shown: np.ndarray,
    features: str,
    random_weights: bool,
) -> Image:
    figure = new_figure(min(6 + 0.1 * len(table), 14), 3.6)
    axes = figure.subplots()
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.margins(x=0.08, y=0.12)
    order = table["order"].to_numpy(float)
    axes.plot(order[shown], distance[shown], color="#cccccc", linewidth=0.8, zorder=1)
    axes.scatter(order[shown], distance[shown], c=colour_of(batches[shown], colours), s=24, zorder=2)
    marked = shown & flagged.to_numpy()
    axes.scatter(
        order[marked], distance[marked], s=110, facecolors="none", edgecolors=FLAG_COLOUR, linewidths=1.6, zorder=3
    )
    for i in np.flatnonzero(marked)[:MAX_NAMED]:
        name = text(table["Metadata_Plate"].iloc[i]) if "Metadata_Plate" in table else ""
        axes.annotate(
            name, (order[i], distance.iloc[i]), xytext=(4, 6), textcoords="offset points", fontsize=7, color=FLAG_COLOUR
        )
    axes.set_xlabel("plate, in acquisition order")
    axes.set_ylabel("negative-control centroid distance")
    missing = int((~shown).sum())
    caption = (
        f"{int(shown.sum())} plate(s) in acquisition order, coloured by batch; {int(marked.sum())} flagged plate(s) "
        "ringed in red" + (f"; {missing} plate(s) without a distance (see the table's note)" if missing else "")
    )
    return Image(figure_uri(figure), f"negative-control drift of {features} profiles", caption, random_weights)


def _cell(value: object) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        return "—" if np.isnan(value) else f"{value:.3g}"
    return "" if pd.isna(value) else str(value)
