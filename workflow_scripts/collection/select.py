"""Feature selection across plates, with pycytominer's operations.

The operations of ``selection.{features}`` run in the configured order as
``pycytominer.feature_select`` runs them: each looks only at the features no
earlier one excluded, so the columns kept are the ones ``feature_select``
keeps. The names follow the config and JUMP's recipe:

- ``drop_na_columns``: pycytominer's ``get_na_columns`` (``na_cutoff``); ±inf
  counts as missing, so a feature NaN or inf on any plate goes;
- ``variance_threshold``: the near-zero-variance filter of ``freq_cut`` and
  ``unique_cut``, which pycytominer 1.7 calls ``frequency_threshold`` (its
  ``variance_threshold`` is now a plain minimum variance) and JUMP's recipe
  still calls ``variance_threshold``;
- ``correlation_threshold`` (``corr_threshold``, ``corr_method``):
  pycytominer's rule, vectorized (``correlation``);
- ``blocklist`` (pycytominer's CellProfiler blocklist) and ``drop_outliers``
  (``outlier_cutoff``): pycytominer's functions;
- ``clip``: after the column operations, values beyond ±``clip_value`` set
  to it (JUMP's recipe, too, drops outlier features and then clips).

Wells without any feature value (no cells, no embedding) are dropped first,
and no NaN reaches the output: a feature still holding one after the
configured operations is dropped and recorded as ``drop_remaining_na``.
With ``correction.locked``, the features are exactly those of the locked
run's ``selected.parquet`` instead.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from pycytominer.cyto_utils import drop_outlier_features, get_blocklist_features
from pycytominer.operations import frequency_threshold, get_na_columns

from workflow_scripts.collection.correlation import correlation_threshold
from workflow_scripts.errors import InputError
from workflow_scripts.profiles.annotate import KEYS
from workflow_scripts.profiles.columns import feature_columns

log = logging.getLogger("workflow_scripts.collection")

Operation = Callable[[pd.DataFrame, list[str], Mapping[str, Any]], list[str]]

OPERATIONS: dict[str, Operation] = {
    "drop_na_columns": lambda df, features, s: get_na_columns(df, features, cutoff=s["na_cutoff"]),
    "variance_threshold": lambda df, features, s: frequency_threshold(
        df, features, freq_cut=s["freq_cut"], unique_cut=s["unique_cut"]
    ),
    "correlation_threshold": lambda df, features, s: correlation_threshold(
        df, features, s["corr_threshold"], s["corr_method"]
    ),
    "blocklist": lambda df, features, s: get_blocklist_features(population_df=df),
    "drop_outliers": lambda df, features, s: drop_outlier_features(df, features, outlier_cutoff=s["outlier_cutoff"]),
}


@dataclass
class Selected:
    """The selected profiles and the record of each operation."""

    table: pd.DataFrame
    report: dict[str, Any]


def select_features(profiles: pd.DataFrame, settings: Mapping[str, Any], locked: Path | None) -> Selected:
    """The profiles with the selected feature columns (``settings``: one feature set's ``selection``)."""
    profiles, report = _measured_wells(profiles)
    features = feature_columns(profiles)
    if locked is not None:
        kept = locked_features(locked, features)
        report["locked"] = str(locked)
    else:
        kept, report["excluded"] = run_operations(profiles, features, settings)
    profiles, report["clipped_values"] = _clip(profiles, kept, settings)
    remaining = [f for f in kept if profiles[f].isna().any()]
    if remaining and locked is not None:
        raise InputError(
            f"select: {len(remaining)} feature(s) the locked run {locked} keeps have NaN here: {', '.join(remaining[:5])}"
        )
    if remaining:
        log.warning(
            "dropping %d features still holding NaN after %s", len(remaining), ", ".join(settings["operations"])
        )
        report.setdefault("excluded", {})["drop_remaining_na"] = remaining
        kept = [f for f in kept if f not in set(remaining)]
    report.update(features_in=len(features), features_out=len(kept))
    log.info("selected %d of %d features over %d wells", len(kept), len(features), len(profiles))
    metadata = [c for c in profiles.columns if c not in set(features)]
    return Selected(profiles[metadata + kept].reset_index(drop=True), report)


def run_operations(
    profiles: pd.DataFrame, features: Sequence[str], settings: Mapping[str, Any]
) -> tuple[list[str], dict[str, list[str]]]:
    """The features kept, and those each operation excluded, as ``pycytominer.feature_select`` runs them."""
    remaining, excluded = list(features), {}
    for name in settings["operations"]:
        if name not in OPERATIONS:
            continue  # clip changes values, not columns: see _clip
        dropped = set(OPERATIONS[name](profiles, remaining, settings))
        excluded[name] = [f for f in remaining if f in dropped]
        remaining = [f for f in remaining if f not in dropped]
        log.info("%s excluded %d features", name, len(excluded[name]))
    return remaining, excluded


def locked_features(locked: Path, features: Sequence[str]) -> list[str]:
    """The feature columns of a locked run's ``selected.parquet``; each must be among ``features``."""
    if not locked.is_file():
        raise InputError(f"correction.locked: {locked} does not exist")
    wanted = feature_columns(pq.read_schema(locked).names)
    missing = [f for f in wanted if f not in set(features)]
    if missing:
        raise InputError(
            f"{locked}: {len(missing)} locked feature(s) absent from these profiles: {', '.join(missing[:5])}"
        )
    return wanted


def _measured_wells(profiles: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The wells with at least one feature value, ±inf made NaN, and what was changed."""
    features = feature_columns(profiles)
    values = profiles[features].to_numpy(np.float64)
    infinite = np.isinf(values)
    if infinite.any():
        profiles = profiles.copy()
        profiles[features] = np.where(infinite, np.nan, values)
    empty = ~np.isfinite(values).any(axis=1)
    keys = [key for key in KEYS if key in profiles.columns]
    dropped = ["/".join(map(str, row)) for row in profiles.loc[empty, keys].itertuples(index=False)]
    if dropped:
        log.warning("dropping %d wells without any feature value, e.g. %s", len(dropped), dropped[0])
    report = {"infinite_values": int(infinite.sum()), "wells_without_features": dropped}
    return profiles.loc[~empty].reset_index(drop=True), report


def _clip(profiles: pd.DataFrame, features: Sequence[str], settings: Mapping[str, Any]) -> tuple[pd.DataFrame, int]:
    """Values beyond ±``clip_value`` set to it, where ``clip`` is configured; and how many were."""
    if "clip" not in settings["operations"]:
        return profiles, 0
    bound = settings["clip_value"]
    values = profiles[list(features)].to_numpy(np.float64)
    beyond = int((np.abs(values) > bound).sum())
    clipped = profiles.copy()
    clipped[list(features)] = np.clip(values, -bound, bound)
    log.info("clipped %d values to ±%s", beyond, bound)
    return clipped, beyond
