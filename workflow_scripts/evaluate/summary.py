"""A few lines that say how a finished run went: the chosen correction and its headline KPIs."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

HEADLINE = ("silhouette_batch", "ilisi_batch", "fraction_retrieved_vs_negcon", "map_moa_consensus")


def run_summary(results: Path) -> str:
    """The report's path, then per feature set the chosen correction and its KPIs against ``none``."""
    lines = [f"Report: {results / 'report' / 'index.html'}"]
    for folder in sorted((results / "collection").glob("*/")):
        choice_path, kpis_path = folder / "selected_method.json", folder / "kpis.parquet"
        if not (choice_path.exists() and kpis_path.exists()):
            continue
        choice = json.loads(choice_path.read_text())
        lines.append(
            f"{folder.name}: chosen correction {choice['selected'] or 'none passes the gate'} ({choice['reason']})"
        )
        lines += _headline(pd.read_parquet(kpis_path), choice["selected"])
    return "\n".join(lines)


def _headline(kpis: pd.DataFrame, selected: str | None) -> list[str]:
    """``kpi: none → chosen`` for the headline KPIs (only ``none`` when nothing was chosen)."""
    shown = [m for m in dict.fromkeys(["none", selected]) if m]
    wide = kpis.pivot(index="kpi", columns="method", values="value")
    lines = []
    for kpi in HEADLINE:
        if kpi in wide.index and all(m in wide.columns for m in shown):
            values = " → ".join(f"{wide.loc[kpi, m]:.3f}" for m in shown)
            lines.append(f"  {kpi} ({' → '.join(shown)}): {values}")
    return lines
