"""The correct stage through its entry point, as the rule calls it: outputs, lineage, provenance, errors."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest

from tests.support.correct_synthetic import Design, feature_columns, stage_args, synthetic_profiles
from workflow_scripts.correct.__main__ import main
from workflow_scripts.correct.models import sha256
from workflow_scripts.provenance import read_provenance, write_table

METHOD = "sphering+harmony"


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return synthetic_profiles(Design(plate_types=("ORF", "CRISPR"))).sample(frac=1.0, random_state=0)


@pytest.fixture(scope="module")
def run(table, tmp_path_factory):
    """One run of the chain on a shuffled table with two plate types."""
    root = tmp_path_factory.mktemp("correct")
    selected = root / "selected.parquet"
    write_table(table, selected, "select", {"operations": ["drop_na_columns"]})
    assert main(stage_args(root / "collection", selected, METHOD, harmony={"n_components": 10})) == 0
    return root / "collection" / "dino"


def test_corrected_rows_keep_metadata_and_order(table, run):
    corrected = pd.read_parquet(run / f"corrected/{METHOD}.parquet")
    metadata = [column for column in table if column.startswith("Metadata_")]
    pd.testing.assert_frame_equal(corrected[metadata], table[metadata].reset_index(drop=True))
    assert list(corrected.columns[len(metadata) :]) == [f"harmony_{i:03d}" for i in range(10)]
    assert corrected.dtypes.iloc[len(metadata) :].eq(np.float64).all()


def test_lineage_names_method_plates_wells_versions_and_sha256(table, run):
    lineage = json.loads((run / f"models/{METHOD}.json").read_text())
    assert lineage["npz_sha256"] == sha256(run / f"models/{METHOD}.npz")
    assert lineage["method"] == METHOD and lineage["steps"] == ["sphering", "harmony"]
    assert lineage["batch_key"] == "Metadata_Batch" and lineage["locked_from"] is None
    assert {"numpy", "harmonypy", "scikit-learn"} <= set(lineage["package_versions"])
    assert [group["plate_type"] for group in lineage["groups"]] == ["CRISPR", "ORF"]
    for group in lineage["groups"]:
        assert [(step["step"], step["fit"]) for step in group["steps"]] == [("sphering", "negcon"), ("harmony", "all")]
        rows = table[table["Metadata_PlateType"] == group["plate_type"]]
        assert group["batches"] == sorted(rows["Metadata_Batch"].unique())
        assert group["n_profiles"] == len(rows)
        assert group["plates"] == {
            plate: sorted(wells) for plate, wells in rows.groupby("Metadata_Plate")["Metadata_Well"].agg(list).items()
        }
    assert lineage["features_in"] == feature_columns(table)


def test_model_npz_holds_the_fitted_parameters(run):
    with np.load(run / f"models/{METHOD}.npz", allow_pickle=False) as stored:
        assert {"g0.s0.W", "g0.s0.mean", "g0.s0.scale", "g0.s1.pca_components", "g1.s1.centroids"} <= set(stored)
        assert json.loads(str(stored["structure"]))["method"] == METHOD


def test_provenance_records_the_model(run):
    provenance = read_provenance(run / f"corrected/{METHOD}.parquet", "correct")
    assert provenance["model_npz_sha256"] == sha256(run / f"models/{METHOD}.npz")
    assert provenance["method"] == METHOD and provenance["warnings"] == []


def test_single_batch_runs_as_none_with_warning_in_log_and_provenance(table, tmp_path, caplog):
    one = table[table["Metadata_Batch"] == "batch_0000"]
    one.to_parquet(tmp_path / "selected.parquet", index=False)
    with caplog.at_level(logging.WARNING):
        assert main(stage_args(tmp_path / "collection", tmp_path / "selected.parquet", "combat")) == 0
    out = tmp_path / "collection/dino"
    corrected = pd.read_parquet(out / "corrected/combat.parquet")
    np.testing.assert_array_equal(corrected[feature_columns(one)], one[feature_columns(one)])
    warning = "combat: plate type ORF has a single Metadata_Batch (batch_0000); combat runs as none"
    assert warning in caplog.text
    assert read_provenance(out / "corrected/combat.parquet", "correct")["warnings"] == [warning]
    assert json.loads((out / "models/combat.json").read_text())["groups"][0]["steps"][0]["ran_as"] == "none"


def test_unknown_method_is_refused_before_reading(tmp_path, caplog):
    assert main(stage_args(tmp_path, tmp_path / "absent.parquet", "sphering+mnn")) == 1
    assert "correction method 'sphering+mnn': unknown 'mnn'" in caplog.text


def test_features_with_nan_are_refused_naming_the_column(table, tmp_path, caplog):
    broken = table.copy()
    broken.iloc[3, broken.columns.get_loc("dino_007")] = np.nan
    broken.to_parquet(tmp_path / "selected.parquet", index=False)
    assert main(stage_args(tmp_path, tmp_path / "selected.parquet", "sphering")) == 1
    assert "feature columns hold NaN or nulls: dino_007" in caplog.text
    assert not (tmp_path / "dino/corrected/sphering.parquet").exists()


def test_missing_batch_key_is_refused(table, tmp_path, caplog):
    table.drop(columns="Metadata_Source").to_parquet(tmp_path / "selected.parquet", index=False)
    args = stage_args(tmp_path, tmp_path / "selected.parquet", "combat", batch_key="Metadata_Source")
    assert main(args) == 1
    assert "no column Metadata_Source" in caplog.text


def test_the_inputs_provenance_is_carried_over(run):
    assert read_provenance(run / f"corrected/{METHOD}.parquet", "select") == {"operations": ["drop_na_columns"]}
