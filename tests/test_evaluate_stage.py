"""The evaluate stage's `kpis` action as the rule calls it: every method × KPI in long form, the activity
and consensus tables, provenance; ComBat lowers the planted batch signal; methods that disagree on their
wells are refused with a message naming the file, and nothing is written."""

from __future__ import annotations

import json
import logging

import pandas as pd
import pyarrow.parquet as pq
import pytest

from tests.support.correct_synthetic import Design, corrected, feature_columns, synthetic_profiles
from workflow_scripts.evaluate.__main__ import main
from workflow_scripts.evaluate.kpi import CATALOGUE

pytestmark = pytest.mark.jax

DESIGN = Design(batches=3, plates_per_batch=2, wells_per_plate=48, negcon_per_plate=12, perturbations=12)
SETTINGS = {"evaluation": {"null_size": 200, "neighbors": 10}}


def profiles() -> pd.DataFrame:
    """Synthetic profiles with a MoA per pair of perturbations (controls have none)."""
    table = synthetic_profiles(DESIGN)
    number = table["Metadata_Perturbation"].str.removeprefix("pert_")
    moa = "moa_" + (pd.to_numeric(number, errors="coerce") // 2).astype("Int64").astype("string")
    return table.assign(Metadata_MoA=moa.where(table["Metadata_PertType"] == "trt"))


def write_methods(folder, table: pd.DataFrame) -> list:
    """``none`` (the table) and ``combat`` (corrected as the correct stage does) under ``corrected/``."""
    (folder / "corrected").mkdir(parents=True)
    combat = table.copy()
    combat[feature_columns(table)] = corrected(table, "combat").values
    paths = [folder / "corrected" / "none.parquet", folder / "corrected" / "combat.parquet"]
    table.to_parquet(paths[0])
    combat.to_parquet(paths[1])
    return paths


def argv(folder, inputs) -> list[str]:
    return [
        "kpis", "--settings", json.dumps(SETTINGS), "--wildcard", "features=dino", "--threads", "2",
        *[arg for path in inputs for arg in ("--input", f"corrected={path}")],
        *[arg for name in ("kpis", "activity", "consensus") for arg in ("--output", f"{name}={folder / name}.parquet")],
    ]  # fmt: skip


def test_kpis_of_every_method_with_activity_and_consensus(tmp_path):
    assert main(argv(tmp_path, write_methods(tmp_path, profiles()))) == 0
    kpis = pd.read_parquet(tmp_path / "kpis.parquet")
    assert list(kpis.columns) == ["features", "method", "kpi", "value", "direction", "n_profiles", "note"]
    assert kpis["kpi"].tolist() == list(CATALOGUE) * 2 and kpis["method"].tolist() == ["none"] * 23 + ["combat"] * 23
    wide = kpis.pivot(index="kpi", columns="method", values="value")
    assert wide.loc["silhouette_batch", "combat"] < wide.loc["silhouette_batch", "none"]
    assert wide.loc["batch_classifier_accuracy", "combat"] < wide.loc["batch_classifier_accuracy", "none"]
    assert wide.loc["map_vs_negcon", "combat"] > 0.5
    single_source = kpis[kpis["kpi"] == "cross_site_top1"]["note"]
    assert single_source.str.startswith("not computable").all()  # one source only
    assert kpis.loc[kpis["value"].isna(), "note"].str.startswith("not computable: ").all()
    activity = pd.read_parquet(tmp_path / "activity.parquet")
    assert len(activity) == 2 * 2 * DESIGN.perturbations  # methods x references x perturbations
    consensus = pd.read_parquet(tmp_path / "consensus.parquet")
    assert len(consensus) == 2 * DESIGN.perturbations and "dino_000" in consensus.columns
    record = json.loads(pq.read_schema(tmp_path / "kpis.parquet").metadata[b"evaluate"])
    assert record["settings"]["null_size"] == 200 and "copairs" in record["versions"]


def test_methods_with_different_wells_are_refused(tmp_path, caplog):
    table = profiles()
    none, combat = write_methods(tmp_path, table)
    pd.read_parquet(combat).iloc[::-1].to_parquet(combat)  # same wells, other order
    with caplog.at_level(logging.ERROR, logger="workflow_scripts.evaluate"):
        assert main(argv(tmp_path, [none, combat])) == 1
    assert "combat.parquet: its wells differ" in caplog.text
    assert not list(tmp_path.glob("*.parquet"))
