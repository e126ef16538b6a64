"""One feature set's cross-plate sections: UMAPs, the KPI table and chart, and drift."""

from __future__ import annotations

from dataclasses import dataclass

from workflow_scripts.report.drift import Drift, drift
from workflow_scripts.report.figures import Image
from workflow_scripts.report.inputs import CollectionInputs, absent, read_json, read_table
from workflow_scripts.report.kpis import KpiTable, kpi_chart, kpi_table
from workflow_scripts.report.umap import UmapOptions, Umaps, umaps


@dataclass(frozen=True)
class FeatureSetSection:
    """What the report shows of one feature set; each part None with its note where its input is absent."""

    features: str
    random_weights: bool
    umaps: Umaps
    kpis: KpiTable | None
    kpi_chart: Image | None
    kpi_notes: list[str]
    drift: Drift | None
    drift_note: str


def feature_set_section(
    inputs: CollectionInputs, methods: list[str], umap_options: UmapOptions, random_weights: bool
) -> FeatureSetSection:
    """The sections of ``inputs.features`` from whichever of its inputs exist."""
    features = inputs.features
    kpis, selection = read_table(inputs.kpis), read_json(inputs.selected_method)
    kpi_notes = []
    if selection is None:
        kpi_notes.append(absent(inputs.selected_method, "selected_method.json") + " (no gate, no selection)")
    table = chart = None
    if kpis is None:
        kpi_notes.insert(0, absent(inputs.kpis, "kpis.parquet"))
    else:
        table = kpi_table(kpis, selection, methods)
        chart = kpi_chart(kpis, table, features, random_weights)
    drift_table = read_table(inputs.drift)
    return FeatureSetSection(
        features=features,
        random_weights=random_weights,
        umaps=umaps(inputs.corrected, features, umap_options, random_weights),
        kpis=table,
        kpi_chart=chart,
        kpi_notes=kpi_notes,
        drift=None if drift_table is None else drift(drift_table, features, random_weights),
        drift_note="" if drift_table is not None else absent(inputs.drift, "drift.parquet"),
    )
