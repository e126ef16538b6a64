"""Per-plate normalization of well profiles against the plate's negative controls.

The numbers are pycytominer's (``pycytominer.normalize(..., samples=
"Metadata_PertType == 'negcon'")``), computed with numpy on the plate's
feature matrix, NaN-aware like pandas and scipy:

- ``mad_robustize``: (x - median) / (1.4826 · median |x - median|) of the controls;
- ``standardize``: (x - mean) / std (population std, as scikit-learn's StandardScaler);
- ``robustize``: (x - median) / (q75 - q25), as scikit-learn's RobustScaler.

One deliberate difference: a feature with no spread on the plate's controls
(zero MAD, std or IQR, or no value at all) is NaN on that plate and listed in
the provenance, where pycytominer divides by MAD + 1e-18 and returns numbers
of order 1e15 and scikit-learn divides by 1. Feature selection then drops it.

Before that, as JUMP's recipe (broadinstitute/jump-profiling-recipe) does and
in its order: ``wellpos`` subtracts, per feature, the mean of each well
position over the plates of the batch; ``cc`` replaces each feature by its
residual from a least-squares line on the cell count
(``Metadata_Object_Count``), for features with more than
:data:`CC_MIN_UNIQUE` distinct values on the plate (count-like features are
left alone, as the recipe does). After it, ``rank_int`` maps each feature's
ranks on the plate to normal quantiles (Blom's offset 3/8, ties averaged).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from workflow_scripts.errors import InputError
from workflow_scripts.logs import some
from workflow_scripts.profiles.annotate import PERT_TYPE
from workflow_scripts.profiles.controls import NEGCON

log = logging.getLogger("workflow_scripts.profiles")

CELL_COUNT = "Metadata_Object_Count"
# JUMP's recipe regresses the cell count only out of features with more distinct values than this.
CC_MIN_UNIQUE = 100
# MAD to standard deviation for normal data, as pycytominer's RobustMAD scales it.
MAD_TO_SD = 1.4826
# Blom's offset of the rank-based inverse normal transform, as JUMP's recipe uses it.
BLOM = 3.0 / 8.0
# A spread this small relative to the centre is rounding, not spread.
_RELATIVE_ZERO = 64 * np.finfo(np.float64).eps


@dataclass
class Normalized:
    """The plate's normalized feature matrix and the record of how it was made."""

    values: np.ndarray
    report: dict[str, Any]


def normalize_plate(
    profiles: pd.DataFrame,
    features: Sequence[str],
    settings: Mapping[str, Any],
    plate: str,
    batch: pd.DataFrame | None = None,
) -> Normalized:
    """Adjust, then scale every feature of one plate against its reference wells (``settings``: ``normalization``).

    ``batch`` holds the well profiles (``Metadata_Plate``, ``Metadata_Well``
    and the features) of every plate of the plate's batch, itself included;
    only ``wellpos`` reads it.
    """
    values = profiles[list(features)].to_numpy(np.float64, copy=True)
    report: dict[str, Any] = {key: settings[key] for key in ("method", "samples", "adjust", "rank_int")}
    if "wellpos" in settings["adjust"]:
        if batch is None:
            raise InputError(f"plate {plate}: normalization.adjust has wellpos but no batch wells were given")
        values, report["wellpos"] = subtract_well_means(values, profiles["Metadata_Well"], batch, features, plate)
    if "cc" in settings["adjust"]:
        values, report["cc"] = regress_cell_count(values, profiles.get(CELL_COUNT), plate)
    reference = reference_wells(profiles, settings["samples"], plate)
    center, scale = fit(values[reference], settings["method"])
    flat = ~(scale > _RELATIVE_ZERO * np.abs(center))
    if flat.all():
        raise InputError(f"plate {plate}: no feature varies across its {int(reference.sum())} reference wells")
    with np.errstate(invalid="ignore", divide="ignore"):
        values = (values - center) / np.where(flat, np.nan, scale)
    if settings["rank_int"]:
        values = rank_int(values)
    no_spread = [f for f, z in zip(features, flat) if z]
    report.update(reference_wells=int(reference.sum()), no_spread_features=no_spread)
    report["nan_features"] = partly_nan(values, features, flat)
    log.info(
        "plate %s: %s against %d %s wells; %d of %d features without spread set to NaN%s",
        plate, settings["method"], reference.sum(), settings["samples"], flat.sum(), len(features),
        f" ({some(no_spread)})" if no_spread else "",
    )  # fmt: skip
    if report["nan_features"]:
        named = [f"{name} ({n} wells)" for name, n in report["nan_features"].items()]
        log.warning("plate %s: %d feature(s) NaN in some wells: %s", plate, len(named), some(named))
    return Normalized(values, report)


def partly_nan(values: np.ndarray, features: Sequence[str], flat: np.ndarray) -> dict[str, int]:
    """Features with spread that are still NaN in some wells (no value measured there), and in how many.

    Recorded so that a NaN in the output is never silent; features without
    spread are NaN everywhere and listed apart.
    """
    counts = np.isnan(values).sum(axis=0)
    return {name: int(n) for name, n, z in zip(features, counts, flat) if n and not z}


def reference_wells(profiles: pd.DataFrame, samples: str, plate: str) -> np.ndarray:
    """The wells that define centre and scale: the negative controls, or ``all``."""
    if samples == "all":
        return np.ones(len(profiles), dtype=bool)
    negcon = (profiles[PERT_TYPE] == NEGCON).fillna(False).to_numpy(bool)
    if not negcon.any():
        raise InputError(
            f"plate {plate}: no negative control wells ({PERT_TYPE} == {NEGCON!r}) to normalize against; "
            "say which wells are controls in annotation.controls, or set normalization.samples to all"
        )
    return negcon


def fit(reference: np.ndarray, method: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature centre and scale of the reference wells, NaN-aware."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN features: centre and scale NaN
        if method == "standardize":
            return np.nanmean(reference, axis=0), np.nanstd(reference, axis=0)
        center = np.nanmedian(reference, axis=0)
        if method == "robustize":
            q25, q75 = np.nanpercentile(reference, [25, 75], axis=0)
            return center, q75 - q25
        if method == "mad_robustize":
            return center, MAD_TO_SD * np.nanmedian(np.abs(reference - center), axis=0)
    raise InputError(f"normalization.method {method!r} is not one of mad_robustize, standardize, robustize")


def subtract_well_means(
    values: np.ndarray, wells: pd.Series, batch: pd.DataFrame, features: Sequence[str], plate: str
) -> tuple[np.ndarray, dict[str, Any]]:
    """Each feature minus its mean at the well's position over the batch's plates (NaN-aware).

    On a batch of one plate this would subtract every well from itself, so it
    is an error: the batch wells must span at least two plates.
    """
    missing = [f for f in features if f not in batch.columns]
    if missing:
        raise InputError(f"plate {plate}: the batch wells lack {len(missing)} of its features, e.g. {missing[0]}")
    plates = sorted(batch["Metadata_Plate"].astype(str).unique())
    if len(plates) < 2:
        raise InputError(
            f"plate {plate}: wellpos needs the well profiles of at least two plates of the batch, got {plates}"
        )
    means = batch.groupby(batch["Metadata_Well"].astype(str))[list(features)].mean()
    absent = sorted(set(wells.astype(str)) - set(means.index))
    if absent:
        raise InputError(f"plate {plate}: well(s) {', '.join(absent[:5])} absent from the batch wells")
    adjusted = values - means.loc[wells.astype(str)].to_numpy(np.float64)
    return adjusted, {"plates": plates, "wells": len(batch)}


def regress_cell_count(
    values: np.ndarray, counts: pd.Series | None, plate: str, min_unique: int = CC_MIN_UNIQUE
) -> tuple[np.ndarray, dict[str, Any]]:
    """Residuals of each feature from a least-squares line on the cell count, over the plate's wells.

    Features with at most ``min_unique`` distinct values, and wells without a
    count or a value, keep their values. Profiles without a cell count
    (DINO's are segmentation-free) are left as they are, and the log and the
    report say so.
    """
    if counts is None or counts.isna().all():
        reason = f"no {CELL_COUNT} in these profiles (DINO profiles are segmentation-free and have no cell count)"
        log.warning("plate %s: cc adjustment skipped: %s", plate, reason)
        return values, {"skipped": reason}
    count = counts.to_numpy(np.float64, na_value=np.nan)[:, None]
    if np.unique(count[np.isfinite(count)]).size < 2:
        reason = f"{CELL_COUNT} takes fewer than two values on the plate"
        log.warning("plate %s: cc adjustment skipped: %s", plate, reason)
        return values, {"skipped": reason}
    chosen = pd.DataFrame(values).nunique().to_numpy() > min_unique
    y = values[:, chosen]
    used = np.isfinite(y) & np.isfinite(count)
    n = np.maximum(used.sum(axis=0), 1)
    x_mean = np.where(used, count, 0).sum(axis=0) / n
    y_mean = np.where(used, y, 0).sum(axis=0) / n
    dx = np.where(used, count - x_mean, 0)
    sxx = (dx**2).sum(axis=0)
    slope = (dx * np.where(used, y - y_mean, 0)).sum(axis=0) / np.where(sxx > 0, sxx, np.nan)
    residuals = y - (y_mean + slope * (count - x_mean))
    adjusted = values.copy()
    adjusted[:, chosen] = np.where(used & (sxx > 0), residuals, y)
    log.info("plate %s: cell count regressed out of %d of %d features", plate, chosen.sum(), values.shape[1])
    return adjusted, {"column": CELL_COUNT, "features_regressed": int(chosen.sum()), "min_unique": min_unique}


def rank_int(values: np.ndarray) -> np.ndarray:
    """Rank-based inverse normal transform of each feature over the plate's wells; NaN stays NaN."""
    ranks = stats.rankdata(values, axis=0, nan_policy="omit")
    n = np.isfinite(values).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return stats.norm.ppf((ranks - BLOM) / (n - 2 * BLOM + 1))
