"""The gate and the automatic choice: min-max scaling with each KPI's direction, 0.4 batch / 0.6 biology,
`none` scored like any method, reasons for every failure and loss, and no failure when nothing passes."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from workflow_scripts.errors import InputError
from workflow_scripts.evaluate.__main__ import main
from workflow_scripts.evaluate.gate import choose_method, scale_across_methods
from workflow_scripts.evaluate.kpi import CATALOGUE
from workflow_scripts.settings import schema

WEIGHTS = {"batch": 0.4, "biology": 0.6}
GATE = {"silhouette_batch": {"threshold": 0.1, "direction": "lower"}}


def long_table(values: dict[str, dict[str, float]]) -> pd.DataFrame:
    """{method: {kpi: value}} as the evaluate stage's long KPI table."""
    rows = [
        {"features": "cellprofiler", "method": method, "kpi": kpi, "value": value, "direction": CATALOGUE[kpi][1],
         "n_profiles": 80, "note": "" if not math.isnan(value) else "not computable: test"}
        for method, kpis in values.items() for kpi, value in kpis.items()
    ]  # fmt: skip
    return pd.DataFrame(rows)


TABLE = long_table(
    {
        "none": {"silhouette_batch": 0.30, "ilisi_batch": 0.10, "map_vs_negcon": 0.50},
        "harmony": {"silhouette_batch": 0.05, "ilisi_batch": 0.70, "map_vs_negcon": 0.40},
        "combat": {"silhouette_batch": 0.08, "ilisi_batch": 0.40, "map_vs_negcon": 0.45},
    }
)


def test_scaling_follows_each_kpi_direction():
    wide = TABLE.pivot(index="method", columns="kpi", values="value")
    scaled = scale_across_methods(wide)
    assert scaled.loc["harmony", "silhouette_batch"] == 1.0 and scaled.loc["none", "silhouette_batch"] == 0.0
    assert scaled.loc["combat", "silhouette_batch"] == pytest.approx((0.30 - 0.08) / 0.25)
    assert scaled.loc["harmony", "ilisi_batch"] == 1.0 and scaled.loc["none", "map_vs_negcon"] == 1.0


def test_choice_weights_batch_and_biology_and_explains():
    choice = choose_method(TABLE, "cellprofiler", GATE, WEIGHTS)
    by_method = {m["method"]: m for m in choice["methods"]}
    # harmony: batch (1 + 1) / 2 = 1, biology 0 -> 0.4; combat: batch (0.88 + 0.5) / 2, biology 0.5
    combat_batch = ((0.30 - 0.08) / 0.25 + 0.5) / 2
    assert by_method["harmony"]["score"] == pytest.approx(0.4)
    assert by_method["combat"]["score"] == pytest.approx(0.4 * combat_batch + 0.6 * 0.5)
    assert choice["selected"] == "combat"
    assert by_method["none"]["passes"] is False
    assert by_method["none"]["failed"] == [{"kpi": "silhouette_batch", "value": 0.30, **GATE["silhouette_batch"]}]
    assert "silhouette_batch 0.300 > 0.1" in by_method["none"]["reason"]
    assert "below combat" in by_method["harmony"]["reason"]
    assert choice["reason"].startswith("combat passes the gate") and "next harmony" in choice["reason"]
    assert choice["gate"] == GATE and choice["weights"] == WEIGHTS


def test_none_wins_when_corrections_only_hurt():
    table = long_table(
        {
            "none": {"silhouette_batch": 0.05, "map_vs_negcon": 0.60},
            "sphering": {"silhouette_batch": 0.06, "map_vs_negcon": 0.30},
        }
    )
    assert choose_method(table, "dino", GATE, WEIGHTS)["selected"] == "none"


def test_no_method_passing_is_said_and_not_an_error():
    gate = {"ilisi_batch": {"threshold": 0.9, "direction": "higher"}}
    choice = choose_method(TABLE, "cellprofiler", gate, WEIGHTS)
    assert choice["selected"] is None
    assert choice["reason"].startswith("no method passes the gate")
    assert all(not m["passes"] and m["failed"][0]["kpi"] == "ilisi_batch" for m in choice["methods"])


def test_a_kpi_not_computable_does_not_block_the_gate():
    table = long_table({"none": {"silhouette_batch": math.nan, "map_vs_negcon": 0.5}})
    choice = choose_method(table, "cellprofiler", GATE, WEIGHTS)
    assert choice["selected"] == "none" and choice["methods"][0]["failed"] == []


def test_unknown_kpi_names_are_refused():
    table = TABLE.copy()
    table.loc[0, "kpi"] = "made_up"
    with pytest.raises(InputError, match="made_up"):
        choose_method(table, "cellprofiler", GATE, WEIGHTS)


def test_stage_writes_the_choice(tmp_path):
    kpis, out = tmp_path / "kpis.parquet", tmp_path / "selected_method.json"
    TABLE.to_parquet(kpis)
    settings = {"evaluation": {"gate": GATE}}
    argv = ["gate", "--settings", json.dumps(settings), "--wildcard", "features=cellprofiler",
            "--input", f"kpis={kpis}", "--output", f"selected_method={out}"]  # fmt: skip
    assert main(argv) == 0
    assert json.loads(out.read_text())["selected"] == "combat"


def test_the_schema_gates_exactly_the_catalogued_kpis():
    gate = schema()["properties"]["evaluation"]["properties"]["gate"]
    assert gate["propertyNames"]["enum"] == list(CATALOGUE)
    assert set(gate["default"]) <= set(CATALOGUE)
