"""UMAPs of one feature set before and after each correction, coloured by batch, source and biology.

Exact neighbours from scikit-learn are handed to UMAP (``precomputed_knn``):
on the subsample a report draws (a few thousand profiles) they are cheap,
and they skip pynndescent, whose just-in-time compilation is most of UMAP's
first-call cost. Every method of a feature set uses the same subsample
(same seed, same row count) and the same colours, so panels compare.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from sklearn.neighbors import NearestNeighbors
from umap import UMAP

from workflow_scripts.profiles.columns import PREFIX, feature_columns
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

# UMAP needs a neighbourhood; below this many profiles there is nothing to show.
MIN_PROFILES = 4
# UMAP's own default; fewer on a subsample that small.
NEIGHBORS = 15
COLOUR_BY = (("batch", "Metadata_Batch"), ("source", "Metadata_Source"))
BIOLOGY = "MoA / perturbation"


@dataclass(frozen=True)
class UmapOptions:
    """The ``report`` settings UMAPs read, and the evaluation keys that name biology."""

    max_profiles: int
    seed: int
    moa_key: str
    replicate_key: str


@dataclass(frozen=True)
class Umaps:
    """One feature set's UMAP figures, one per method, and their shared legends."""

    figures: list[Image]
    legends: list[Legend]
    notes: list[str]


def subsample(rows: int, limit: int, seed: int) -> np.ndarray:
    """Row positions to embed: all of them, or ``limit`` drawn without replacement with ``seed``."""
    if rows <= limit:
        return np.arange(rows)
    return np.sort(np.random.default_rng(seed).choice(rows, size=limit, replace=False))


def embed(values: np.ndarray, neighbors: int, seed: int) -> np.ndarray:
    """Two UMAP coordinates per row, reproducible for a given ``seed``."""
    k = min(neighbors, len(values) - 1)
    distances, indices = NearestNeighbors(n_neighbors=k).fit(values).kneighbors(values)
    model = UMAP(n_neighbors=k, random_state=seed, precomputed_knn=(indices, distances))
    with warnings.catch_warnings():
        # A fixed random_state makes UMAP single-threaded, and precomputed neighbours leave it without
        # ``transform``: it announces both on every call, and the report needs neither.
        warnings.filterwarnings("ignore", message="n_jobs value", category=UserWarning)
        warnings.filterwarnings("ignore", message=r"precomputed_knn\[2\]", category=UserWarning)
        return model.fit_transform(values)


def biology_labels(table: pd.DataFrame, moa_key: str, replicate_key: str) -> pd.Series:
    """Per profile: ``negative control``, else its MoA, else its perturbation, else ``unannotated``."""
    empty = pd.Series("", index=table.index)
    moa = table.get(moa_key, empty).fillna("").astype(str)
    perturbation = table.get(replicate_key, empty).fillna("").astype(str)
    label = moa.where(moa != "", perturbation).replace("", "unannotated")
    controls = table.get("Metadata_PertType", empty).fillna("").astype(str) == "negcon"
    return label.where(~controls, "negative control")


def umaps(corrected: Mapping[str, Path], features: str, options: UmapOptions, random_weights: bool) -> Umaps:
    """A figure per method (``none`` is before correction), three panels each.

    The tables are read one at a time: at full scale each can be gigabytes.
    Every method's table has the same rows, so the first one's labels set
    the colours and the legends.
    """
    present = {method: path for method, path in corrected.items() if path.is_file()}
    notes = [
        f"corrected/{method}.parquet: {path} not found" for method, path in corrected.items() if method not in present
    ]
    if not present:
        return Umaps([], [], notes or [f"no corrected {features} tables were given to the report stage"])
    first = next(iter(present.values()))
    metadata = [name for name in pq.read_schema(first).names if name.startswith(PREFIX)]
    labels = _labels(pd.read_parquet(first, columns=metadata), options)
    colours = {title: category_colours(labels[title]) for title in labels}
    figures = []
    for method, path in present.items():
        figure, note = _figure(method, pd.read_parquet(path), colours, options)
        if figure is None:
            notes.append(note)
            continue
        figures.append(Image(figure, f"UMAP of {features} profiles, {method}", note, random_weights))
    legends = [Legend(title, legend(labels[title], colours[title])) for title in labels]
    return Umaps(figures, legends, notes)


def _figure(
    method: str, table: pd.DataFrame, colours: dict[str, dict[str, str]], options: UmapOptions
) -> tuple[str | None, str]:
    """The figure's data URI and caption, or None and why there is none."""
    rows = subsample(len(table), options.max_profiles, options.seed)
    all_features = feature_columns(table.columns)
    values = table[all_features].iloc[rows].to_numpy(float)
    finite = np.isfinite(values).all(axis=0)
    if len(rows) < MIN_PROFILES or not finite.any():
        return None, f"{method}: {len(rows)} profile(s), {int(finite.sum())} finite feature(s): too few for a UMAP"
    coordinates = embed(values[:, finite], NEIGHBORS, options.seed)
    labels = _labels(table, options)
    figure = new_figure(12, 3.8)
    for axes, (title, colour) in zip(figure.subplots(1, len(colours)), colours.items(), strict=True):
        axes.scatter(*coordinates.T, s=10, c=colour_of(labels[title].iloc[rows], colour), linewidths=0, alpha=0.85)
        axes.set_title(f"by {title}", fontsize=9)
        axes.set_xticks([])
        axes.set_yticks([])
    figure.suptitle(text(method) + (" (before correction)" if method == "none" else ""), fontsize=10)
    neighbours = min(NEIGHBORS, len(rows) - 1)
    return figure_uri(figure), _caption(method, len(rows), len(table), options, neighbours, int((~finite).sum()))


def _labels(table: pd.DataFrame, options: UmapOptions) -> dict[str, pd.Series]:
    """The label of every row in each colouring, in panel order."""
    unknown = pd.Series("unannotated", index=table.index)
    labels = {title: table.get(column, unknown).fillna("unannotated").astype(str) for title, column in COLOUR_BY}
    return {**labels, BIOLOGY: biology_labels(table, options.moa_key, options.replicate_key)}


def _caption(method: str, shown: int, total: int, options: UmapOptions, k: int, dropped: int) -> str:
    sample = (
        f"all {total} profiles"
        if shown == total
        else f"{shown} of {total} profiles, drawn at random with seed {options.seed}"
    )
    caption = f"{method}: {sample}; {k} neighbours, random_state {options.seed}"
    if dropped:
        caption += f"; {dropped} feature(s) with missing values left out"
    return caption
