"""The KPI table of one feature set (every method × KPI, pass or fail at the gate) and its comparison chart.

``kpis.parquet`` gives the values (a missing one carries its reason in
``note``); ``selected_method.json`` gives the gate, which KPIs each method
failed, the scores, and why the chosen method won. KPIs are ordered as the
catalogue lists them: batch signal left first, then biology kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib import colormaps

from workflow_scripts.evaluate.kpi import CATALOGUE
from workflow_scripts.report.figures import Image, figure_uri, new_figure, text

GROUPS = ("batch", "biology")
ARROWS = {"lower": "↓", "higher": "↑"}


@dataclass(frozen=True)
class Cell:
    """One method's value of one KPI; ``status`` is pass, fail or empty where the KPI is not gated."""

    value: str
    status: str
    note: str


@dataclass(frozen=True)
class Row:
    """One KPI across methods."""

    kpi: str
    group: str
    arrow: str
    gate: str
    cells: list[Cell]


@dataclass(frozen=True)
class MethodLine:
    """A method's scores and verdict from ``selected_method.json``."""

    method: str
    score: str
    batch_score: str
    biology_score: str
    passes: str
    reason: str


@dataclass(frozen=True)
class KpiTable:
    """Everything the KPI section shows for one feature set."""

    methods: list[str]
    selected: str | None
    reason: str
    weights: str
    rows: list[Row]
    lines: list[MethodLine]


def kpi_table(kpis: pd.DataFrame, selection: dict | None, method_order: list[str]) -> KpiTable:
    """The table from the long ``kpis.parquet`` and, where given, the selection's gate and verdicts."""
    kpis = kpis.assign(method=kpis["method"].astype(str), kpi=kpis["kpi"].astype(str))
    selection = selection or {}
    verdicts = {entry["method"]: entry for entry in selection.get("methods", [])}
    methods = _ordered(kpis["method"].unique().tolist(), method_order)
    failed = {
        (method, item["kpi"]) for method, entry in verdicts.items() for item in entry.get("failed", []) if "kpi" in item
    }
    gate = selection.get("gate", {})
    rows = []
    for kpi in _ordered(kpis["kpi"].unique().tolist(), list(CATALOGUE)):
        of_kpi = kpis[kpis["kpi"] == kpi].drop_duplicates("method").set_index("method")
        direction = str(of_kpi["direction"].iloc[0]) if "direction" in of_kpi else CATALOGUE.get(kpi, ("", ""))[1]
        cells = []
        for method in methods:
            if method not in of_kpi.index:
                cells.append(Cell("—", "", "no row in kpis.parquet"))
                continue
            value = pd.to_numeric(pd.Series([of_kpi.at[method, "value"]]), errors="coerce").iloc[0]
            note = "" if pd.isna(of_kpi.at[method, "note"]) else str(of_kpi.at[method, "note"])
            status = (
                "" if kpi not in gate or method not in verdicts else ("fail" if (method, kpi) in failed else "pass")
            )
            cells.append(Cell("—" if math.isnan(value) else f"{value:.3g}", status, note))
        group = CATALOGUE.get(kpi, ("other", ""))[0]
        rows.append(Row(kpi, group, ARROWS.get(direction, ""), _gate_text(gate.get(kpi)), cells))
    lines = [
        MethodLine(
            method,
            _number(entry.get("score")),
            _number(entry.get("batch_score")),
            _number(entry.get("biology_score")),
            "yes" if entry.get("passes") else "no",
            str(entry.get("reason", "")),
        )
        for method in methods
        if (entry := verdicts.get(method)) is not None
    ]
    weights = ", ".join(f"{name} {weight}" for name, weight in selection.get("weights", {}).items())
    return KpiTable(methods, selection.get("selected"), str(selection.get("reason", "")), weights, rows, lines)


def _ordered(found: list[str], order: list[str]) -> list[str]:
    """``found`` in ``order``, anything else after, as found."""
    return [name for name in order if name in found] + [name for name in found if name not in order]


def _gate_text(rule: dict | None) -> str:
    if not rule:
        return ""
    return f"{'≤' if rule.get('direction') == 'lower' else '≥'} {_number(rule.get('threshold'))}"


def _number(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.3g}" if isinstance(value, (int, float)) else str(value)


def kpi_chart(kpis: pd.DataFrame, table: KpiTable, features: str, random_weights: bool) -> Image | None:
    """Methods × KPIs, each KPI scaled to 0 (worst method) … 1 (best), batch and biology side by side.

    Min-max scaling per KPI makes KPIs of different ranges comparable within
    a run; it says which method is best on each, not by how much.
    """
    groups = [(group, [row for row in table.rows if row.group == group]) for group in (*GROUPS, "other")]
    groups = [(group, rows) for group, rows in groups if rows]
    if not groups or not table.methods:
        return None
    widths = [max(len(rows), 2) for _, rows in groups]
    figure = new_figure(2.4 + 0.7 * sum(widths), 1.8 + 0.42 * len(table.methods))
    axes_list = figure.subplots(1, len(groups), squeeze=False, width_ratios=widths)[0]
    values = (
        kpis.assign(method=kpis["method"].astype(str), kpi=kpis["kpi"].astype(str))
        .drop_duplicates(["method", "kpi"])
        .pivot(index="method", columns="kpi", values="value")
    )
    colours = colormaps["RdYlGn"].with_extremes(bad="#dddddd")
    for i, (axes, (group, rows)) in enumerate(zip(axes_list, groups, strict=True)):
        raw = values.reindex(index=table.methods, columns=[row.kpi for row in rows]).to_numpy(float)
        image = axes.imshow(
            np.ma.masked_invalid(_scaled(raw, [row.arrow for row in rows])), cmap=colours, vmin=0, vmax=1, aspect="auto"
        )
        for (r, c), value in np.ndenumerate(raw):
            axes.text(c, r, "n/a" if math.isnan(value) else f"{value:.2g}", ha="center", va="center", fontsize=7)
        axes.set_xticks(
            range(len(rows)), [f"{row.kpi} {row.arrow}" for row in rows], rotation=60, ha="right", fontsize=7
        )
        axes.set_yticks(range(len(table.methods)), [text(m) for m in table.methods] if i == 0 else [], fontsize=8)
        for label, method in zip(axes.get_yticklabels(), table.methods, strict=False):
            label.set_fontweight("bold" if method == table.selected else "normal")
        axes.set_title(f"{group} KPIs", fontsize=9)
    figure.colorbar(image, ax=axes_list.tolist(), shrink=0.9, label="1 = best method")
    caption = (
        "each KPI min-max scaled across methods so that 1 is the best method (↑ higher is better, ↓ lower); "
        "red worst, green best; numbers are the raw values; grey: not computable"
        + (f"; selected method in bold: {table.selected}" if table.selected else "")
    )
    return Image(figure_uri(figure), f"KPI comparison of {features} methods", caption, random_weights)


def _scaled(raw: np.ndarray, arrows: list[str]) -> np.ndarray:
    """Per column: 0 for the worst method, 1 for the best; 0.5 where all methods tie."""
    finite = ~np.isnan(raw)
    low = np.min(raw, axis=0, initial=np.inf, where=finite)
    span = np.max(raw, axis=0, initial=-np.inf, where=finite) - low
    with np.errstate(invalid="ignore", divide="ignore"):
        scaled = np.where(span > 0, (raw - low) / np.where(span > 0, span, 1), 0.5)
    lower_better = np.array([arrow == ARROWS["lower"] for arrow in arrows])
    scaled[:, lower_better] = 1 - scaled[:, lower_better]
    return np.where(np.isnan(raw), np.nan, scaled)
