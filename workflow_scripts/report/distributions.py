"""Per-plate feature distributions: negative controls against treated wells, before and after normalization.

The features shown are the ones where treated wells differ most from the
controls after normalization, pooled over the plates shown, so each plate
shows the same few features and a reader can compare plates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from workflow_scripts.profiles.columns import feature_columns
from workflow_scripts.report.figures import Image, figure_uri, new_figure, text
from workflow_scripts.report.inputs import PlateFiles

# Features drawn per feature set: enough to see normalization at work, few enough to read.
FEATURES_SHOWN = 3
CONTROL_COLOUR = "#8c8c8c"
TREATED_COLOUR = "#d62728"


@dataclass(frozen=True)
class Groups:
    """Which wells are negative controls and which are treated (contract: not negcon, replicate key set)."""

    controls: pd.Series
    treated: pd.Series


def groups(table: pd.DataFrame, replicate_key: str) -> Groups:
    """Negative controls and treated wells of one profile table."""
    pert_type = table.get("Metadata_PertType", pd.Series("", index=table.index)).fillna("").astype(str)
    replicate = table.get(replicate_key, pd.Series("", index=table.index)).fillna("").astype(str)
    controls = pert_type == "negcon"
    return Groups(controls, ~controls & (replicate != ""))


def informative_features(tables: Sequence[pd.DataFrame], replicate_key: str, count: int) -> tuple[list[str], str]:
    """The ``count`` features that separate treated wells from controls most, and how they were chosen.

    Normalized profiles are in units of the controls' spread, so the median
    difference compares across features; without both groups the features
    with the widest spread are shown instead.
    """
    pooled = pd.concat(tables, ignore_index=True)
    names = feature_columns(pooled.columns)
    values = pooled[names].apply(pd.to_numeric, errors="coerce")
    wells = groups(pooled, replicate_key)
    if wells.controls.any() and wells.treated.any():
        score = (values[wells.treated].median() - values[wells.controls].median()).abs()
        how = "largest difference of medians, treated vs negative controls, after normalization"
    else:
        score = values.quantile(0.75) - values.quantile(0.25)
        how = "widest interquartile range after normalization (no negative controls or no treated wells)"
    return score.dropna().sort_values(ascending=False, kind="stable").index[:count].tolist(), how


def distribution_figure(
    alt: str,
    normalized: pd.DataFrame,
    annotated: pd.DataFrame | None,
    features: Sequence[str],
    replicate_key: str,
    random_weights: bool,
) -> Image:
    """Box plots with every well as a point; a column per feature, a row before (if given) and after normalization."""
    stages = [("before normalization", annotated), ("after normalization", normalized)]
    stages = [(title, table) for title, table in stages if table is not None]
    figure = new_figure(0.6 + 2.7 * len(features), 0.4 + 2.1 * len(stages))
    grid = figure.subplots(len(stages), len(features), squeeze=False)
    rng = np.random.default_rng(0)
    for row, (title, table) in enumerate(stages):
        wells = groups(table, replicate_key)
        for column, feature in enumerate(features):
            axes = grid[row][column]
            values = pd.to_numeric(table[feature], errors="coerce") if feature in table else pd.Series(dtype=float)
            parts = [values[wells.controls].dropna().to_numpy(), values[wells.treated].dropna().to_numpy()]
            _boxes(axes, parts, rng)
            if row == 0:
                axes.set_title(text(feature), fontsize=8)
            if column == 0:
                axes.set_ylabel(title, fontsize=8)
    caption = (
        f"{len(features)} feature(s); grey: negative controls, red: treated wells "
        f"(not negcon, {replicate_key} set); each point a well"
    )
    return Image(figure_uri(figure), alt, caption, random_weights)


def _boxes(axes, parts: list[np.ndarray], rng: np.random.Generator) -> None:
    labels = [f"controls ({len(parts[0])})", f"treated ({len(parts[1])})"]
    present = [i for i, part in enumerate(parts) if len(part)]
    if present:
        axes.boxplot([parts[i] for i in present], positions=present, widths=0.5, showfliers=False)
    for i in present:
        jitter = rng.uniform(-0.15, 0.15, len(parts[i]))
        colour = CONTROL_COLOUR if i == 0 else TREATED_COLOUR
        axes.scatter(i + jitter, parts[i], s=12, color=colour, alpha=0.8, linewidths=0, zorder=3)
    axes.set_xticks([0, 1], labels, fontsize=7)
    axes.set_xlim(-0.6, 1.6)
    axes.tick_params(axis="y", labelsize=7)


@dataclass(frozen=True)
class PlateDistribution:
    """One plate's distribution figure, or why it has none."""

    plate: PlateFiles
    image: Image | None
    note: str


@dataclass(frozen=True)
class DistributionSection:
    """One feature set's distributions over the plates shown."""

    features: str
    chosen: list[str]
    how: str
    plates: list[PlateDistribution]
    random_weights: bool


def distribution_section(
    plates: Sequence[PlateFiles], features: str, replicate_key: str, random_weights: bool
) -> DistributionSection:
    """Pick the informative features over the plates' normalized profiles, then draw each plate."""
    normalized = {plate: _read(plate.normalized(features)) for plate in plates}
    present = [table for table in normalized.values() if table is not None]
    chosen, how = informative_features(present, replicate_key, FEATURES_SHOWN) if present else ([], "")
    drawn = []
    for plate, table in normalized.items():
        if table is None or not chosen:
            why = f"{plate.normalized(features)} not found" if table is None else "no feature has values"
            drawn.append(PlateDistribution(plate, None, why))
            continue
        annotated = _read(plate.annotated(features))
        note = "" if annotated is not None else f"before normalization: {plate.annotated(features)} not found"
        alt = f"{features} feature distributions of plate {plate.plate}"
        image = distribution_figure(alt, table, annotated, chosen, replicate_key, random_weights)
        drawn.append(PlateDistribution(plate, image, note))
    return DistributionSection(features, chosen, how, drawn, random_weights)


def _read(path: Path) -> pd.DataFrame | None:
    return pd.read_parquet(path) if path.is_file() else None
