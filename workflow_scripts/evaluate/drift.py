"""Negative-control drift across plates, in acquisition order.

Each plate's negative-control wells are read before normalization (the
annotated profiles): after per-plate normalization against those very
controls their centroid sits at zero on every plate, and drift is invisible.
Features are put on one scale with the run's controls (median and MAD over
every control well of every plate), then per plate:

- ``centroid_distance``: the RMS distance of the plate's control centroid
  (median) from the run's, per feature;
- ``dispersion``: the median RMS distance of the plate's control wells from
  their own centroid;
- ``robust_z``: the plate's distance against the other plates', as
  (distance - median) / (1.4826 · MAD), or 1.2533 · the mean absolute
  deviation where the MAD is 0; a plate beyond ``robust_z`` is flagged.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from workflow_scripts.errors import InputError
from workflow_scripts.profiles.columns import feature_columns

PLATE_KEYS = ["Metadata_Source", "Metadata_Batch", "Metadata_Plate"]
MAD_TO_SD = 1.4826
MEAN_AD_TO_SD = 1.2533
BATCH_DATE = re.compile(r"^(\d{4})[_-](\d{2})[_-](\d{2})")


def read_controls(paths: Sequence[str | Path], order_column: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The negative-control wells of every plate's annotated profiles, and every plate's keys.

    Only the control rows are read: a run of thousands of plates holds far
    more treated wells than memory needs to.
    """
    controls, plates = [], []
    for path in paths:
        names = pq.read_schema(path).names
        keys = [c for c in (*PLATE_KEYS, order_column) if c in names]
        if "Metadata_PertType" not in names:
            raise InputError(f"{path}: no Metadata_PertType column, so its negative controls are unknown")
        plates.append(pd.read_parquet(path, columns=keys).drop_duplicates())
        controls.append(pd.read_parquet(path, filters=[("Metadata_PertType", "==", "negcon")]))
    return pd.concat(controls, ignore_index=True), pd.concat(plates, ignore_index=True)


def control_drift(controls: pd.DataFrame, plates: pd.DataFrame, settings: Mapping[str, Any]) -> pd.DataFrame:
    """One row per plate (schema of ``drift.parquet`` without ``features``), in acquisition order.

    ``controls``: every plate's annotated, un-normalized negative-control wells;
    ``plates``: every plate's keys (and acquisition date column, if any);
    ``settings``: ``evaluation.drift``.
    """
    features = feature_columns(controls)
    plates = _acquisition_order(plates, settings["order_column"])
    if controls.empty:
        raise InputError("drift: no plate has negative-control wells (Metadata_PertType == 'negcon')")
    scaled = _run_scaled(controls[features].to_numpy(dtype=float))
    run_centre = np.nanmedian(scaled, axis=0)
    positions = controls.reset_index(drop=True).groupby(PLATE_KEYS, sort=False).indices
    rows = []
    for order, plate in enumerate(plates.itertuples(index=False)):
        found = positions.get((plate.Metadata_Source, plate.Metadata_Batch, plate.Metadata_Plate), [])
        rows.append({**plate._asdict(), "order": order, **_plate_drift(scaled[found], run_centre)})
    table = pd.DataFrame(rows)
    table["robust_z"] = _robust_z(table["centroid_distance"].to_numpy(dtype=float))
    table["flagged"] = table["robust_z"] > settings["robust_z"]
    table.loc[table["flagged"], "note"] = table["note"] + _flag_note(settings["robust_z"])
    return table[[*PLATE_KEYS, "order", "acquired", "n_controls", "centroid_distance", "dispersion", "robust_z",
                  "flagged", "note"]]  # fmt: skip


def _acquisition_order(plates: pd.DataFrame, order_column: str) -> pd.DataFrame:
    """The plates with their acquisition date, sorted by it (stable: table order breaks ties)."""
    plates = plates.drop_duplicates(PLATE_KEYS).reset_index(drop=True)
    if order_column in plates.columns:
        acquired = plates[order_column].astype("string").fillna("")
    else:
        acquired = plates["Metadata_Batch"].map(_batch_date)
    plates = plates[PLATE_KEYS].assign(acquired=acquired.astype(str))
    return plates.sort_values("acquired", kind="stable").reset_index(drop=True)


def _batch_date(batch: str) -> str:
    """``2021_06_14_Batch1`` → ``2021-06-14``; empty when the batch name starts with no date."""
    found = BATCH_DATE.match(batch)
    return "-".join(found.groups()) if found else ""


def _run_scaled(values: np.ndarray) -> np.ndarray:
    """Features centred and scaled by the run's control wells; features without spread are dropped."""
    centre = np.nanmedian(values, axis=0)
    spread = MAD_TO_SD * np.nanmedian(np.abs(values - centre), axis=0)
    keep = np.isfinite(spread) & (spread > 0)
    return (values[:, keep] - centre[keep]) / spread[keep]


def _plate_drift(scaled: np.ndarray, run_centre: np.ndarray) -> dict:
    if len(scaled) == 0:
        return {"n_controls": 0, "centroid_distance": np.nan, "dispersion": np.nan, "note": "no negative controls"}
    centre = np.nanmedian(scaled, axis=0)
    spread = np.sqrt(np.nanmean((scaled - centre) ** 2, axis=1))
    return {
        "n_controls": len(scaled),
        "centroid_distance": float(np.sqrt(np.nanmean((centre - run_centre) ** 2))),
        "dispersion": float(np.median(spread)),
        "note": "",
    }


def _robust_z(distance: np.ndarray) -> np.ndarray:
    """Each plate's distance against the plates', in robust standard deviations (0 where all agree)."""
    centre = np.nanmedian(distance)
    deviation = np.abs(distance - centre)
    spread = MAD_TO_SD * np.nanmedian(deviation)
    if not spread > 0:  # most plates agree exactly: the mean absolute deviation still sees the odd one out
        spread = MEAN_AD_TO_SD * np.nanmean(deviation)
    if not spread > 0:
        return np.zeros_like(distance)
    return (distance - centre) / spread


def _flag_note(limit: float) -> str:
    return f"control centroid beyond robust z {limit}"
