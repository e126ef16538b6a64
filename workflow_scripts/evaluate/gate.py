"""The go / no-go gate and the automatic choice of a correction per feature set.

A method passes when every gated KPI it could compute is on the right side of
its threshold. Methods are then ranked by a combined score: each KPI is
min-max scaled across the methods with its direction, so 1 is the best
method on that KPI and 0 the worst (as scib scales its metrics); the batch
KPIs' mean weighs 0.4 and the biology KPIs' mean 0.6 by default (Arevalo et
al. 2024). ``none`` is scored like any method, so a correction that does not
help loses to leaving the profiles as they are. When no method passes, the
choice says so and names what failed; the run goes on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from workflow_scripts.errors import InputError
from workflow_scripts.evaluate.kpi import CATALOGUE


def choose_method(kpis: pd.DataFrame, features: str, gate: Mapping[str, Any], weights: Mapping[str, float]) -> dict:
    """The content of ``selected_method.json`` for one feature set's long KPI table."""
    wide = _wide(kpis)
    scaled = scale_across_methods(wide)
    methods = [_verdict(method, wide.loc[method], scaled.loc[method], gate, weights) for method in wide.index]
    passing = sorted((m for m in methods if m["passes"]), key=lambda m: (-m["score"], m["method"]))
    selected = passing[0]["method"] if passing else None
    for entry in methods:
        if entry["passes"] and entry["method"] != selected:
            entry["reason"] = (
                f"passes the gate, but scores {entry['score']:.3f} below {selected} ({passing[0]['score']:.3f})"
            )
    return {
        "features": features,
        "selected": selected,
        "reason": _summary(selected, passing, methods),
        "weights": dict(weights),
        "gate": {kpi: dict(rule) for kpi, rule in gate.items()},
        "methods": methods,
    }


def scale_across_methods(wide: pd.DataFrame) -> pd.DataFrame:
    """Each KPI min-max scaled over the methods, 1 the best in its direction.

    A KPI with one value for every method says nothing about which is better
    and is left out (NaN) of the scores, as is a KPI a method could not compute.
    """
    low, high = wide.min(), wide.max()
    spread = (high - low).where(high > low)
    scaled = (wide - low) / spread
    lower_better = [kpi for kpi in wide.columns if CATALOGUE[kpi][1] == "lower"]
    scaled[lower_better] = 1 - scaled[lower_better]
    return scaled


def _wide(kpis: pd.DataFrame) -> pd.DataFrame:
    """Methods × KPIs; unknown KPI names are an error naming them."""
    unknown = sorted(set(kpis["kpi"]) - set(CATALOGUE))
    if unknown:
        raise InputError(f"kpis table names unknown KPI(s): {', '.join(unknown)}")
    wide = kpis.pivot(index="method", columns="kpi", values="value")
    return wide[[kpi for kpi in CATALOGUE if kpi in wide.columns]].astype(float)


def _verdict(
    method: str, values: pd.Series, scaled: pd.Series, gate: Mapping[str, Any], weights: Mapping[str, float]
) -> dict:
    """One method's scores, and the gated KPIs it failed."""
    failed = []
    for kpi, rule in gate.items():
        value = values.get(kpi, math.nan)
        if math.isnan(value):
            continue
        ok = value <= rule["threshold"] if rule["direction"] == "lower" else value >= rule["threshold"]
        if not ok:
            failed.append({"kpi": kpi, "value": float(value), **rule})
    group_means = {
        group: _mean([scaled[k] for k in scaled.index if CATALOGUE[k][0] == group]) for group in ("batch", "biology")
    }
    score = _weighted(group_means, weights)
    reason = "passes the gate" if not failed else "fails the gate on " + "; ".join(map(_failure, failed))
    return {
        "method": method,
        "score": score,
        "batch_score": group_means["batch"],
        "biology_score": group_means["biology"],
        "passes": not failed,
        "failed": failed,
        "reason": reason,
    }


def _mean(values: list[float]) -> float | None:
    present = [v for v in values if not math.isnan(v)]
    return sum(present) / len(present) if present else None


def _weighted(group_means: Mapping[str, float | None], weights: Mapping[str, float]) -> float:
    """Weighted mean of the group scores that exist (a group with no computable KPI drops out)."""
    present = {g: m for g, m in group_means.items() if m is not None}
    total = sum(weights[g] for g in present)
    return sum(weights[g] * m for g, m in present.items()) / total if total else 0.0


def _failure(entry: Mapping[str, Any]) -> str:
    sign = ">" if entry["direction"] == "lower" else "<"
    return f"{entry['kpi']} {entry['value']:.3f} {sign} {entry['threshold']}"


def _summary(selected: str | None, passing: list[dict], methods: list[dict]) -> str:
    if selected is None:
        return f"no method passes the gate ({len(methods)} scored); the profiles of every method are kept for review"
    runner_up = f"; next {passing[1]['method']} ({passing[1]['score']:.3f})" if len(passing) > 1 else ""
    return f"{selected} passes the gate with the best combined score ({passing[0]['score']:.3f}){runner_up}"
