"""Locked mode: an earlier run's model applied to new plates, old rows reproduced bit for bit."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from tests.support.correct_synthetic import Design, feature_columns, stage_args, synthetic_profiles
from workflow_scripts.correct.__main__ import main

DESIGN = Design(batches=3, plates_per_batch=2, wells_per_plate=48, negcon_per_plate=12, features=16)
LOCKABLE = ["sphering", "control_std", "combat", "sphering+control_std+combat"]
KEY = ["Metadata_Plate", "Metadata_Well"]


@pytest.fixture(scope="module")
def tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    """The first run's table, and the second's: the same plates (rows shuffled), a new plate of a
    known batch (batch_0001), and two plates of a new batch (batch_0100)."""
    first = synthetic_profiles(DESIGN)
    extra = synthetic_profiles(replace(DESIGN, seed=7))
    known = extra[extra["Metadata_Plate"] == "batch_0001_P0"].assign(Metadata_Plate="batch_0001_P9")
    new = synthetic_profiles(replace(DESIGN, batches=1), batch_offset=100)
    second = pd.concat([first, known, new]).sample(frac=1.0, random_state=1).reset_index(drop=True)
    return first, second


def _run(root, table, method, **correction) -> int:
    root.mkdir(parents=True, exist_ok=True)
    table.to_parquet(root / "selected.parquet", index=False)
    return main(stage_args(root / "collection", root / "selected.parquet", method, **correction))


@pytest.fixture(scope="module", params=LOCKABLE)
def locked_run(request, tables, tmp_path_factory):
    method, (first, second) = request.param, tables
    root = tmp_path_factory.mktemp("locked")
    assert _run(root / "first", first, method) == 0
    assert _run(root / "second", second, method, locked=str(root / "first/collection")) == 0
    first_rows, second_rows = (
        pd.read_parquet(root / run / f"collection/dino/corrected/{method}.parquet") for run in ("first", "second")
    )
    return method, root, first_rows, second_rows


def test_existing_plates_are_reproduced_byte_for_byte(locked_run):
    _, _, before, after = locked_run
    again = before[KEY].merge(after, on=KEY, how="left")
    features = feature_columns(before)
    assert again[features].notna().all().all()
    assert again[features].to_numpy().tobytes() == before[features].to_numpy().tobytes()


def test_rows_keep_the_new_tables_order(locked_run, tables):
    _, _, _, after = locked_run
    pd.testing.assert_frame_equal(after.filter(like="Metadata_"), tables[1].filter(like="Metadata_"))


def test_lineage_says_what_was_locked_and_what_was_estimated(locked_run):
    method, root, _, _ = locked_run
    first = json.loads((root / f"first/collection/dino/models/{method}.json").read_text())
    second = json.loads((root / f"second/collection/dino/models/{method}.json").read_text())
    assert second["locked_from"]["npz_sha256"] == first["npz_sha256"]
    assert "batch_0100" in second["groups"][0]["batches"] and "batch_0001_P9" in second["groups"][0]["plates"]
    for step in second["groups"][0]["steps"]:
        assert step["fit"] == "locked"
        assert step["new_batches"] == ([] if step["step"] == "sphering" else ["batch_0100"])


def test_new_plates_get_the_models_parameters_or_their_own_controls(tables, tmp_path):
    """control_std: the new plate of batch_0001 uses that batch's fitted controls; batch_0100 its own."""
    first, second = tables
    assert _run(tmp_path / "first", first, "control_std") == 0
    assert _run(tmp_path / "second", second, "control_std", locked=str(tmp_path / "first/collection")) == 0
    after = pd.read_parquet(tmp_path / "second/collection/dino/corrected/control_std.parquet")
    features = feature_columns(first)

    def standardized(rows: pd.DataFrame, controls: pd.DataFrame) -> np.ndarray:
        reference = controls[controls["Metadata_PertType"] == "negcon"][features]
        return ((rows[features] - reference.mean()) / reference.std(ddof=0)).to_numpy()

    known = second["Metadata_Plate"] == "batch_0001_P9"
    fitted_batch = first[first["Metadata_Batch"] == "batch_0001"]
    np.testing.assert_allclose(after[known][features], standardized(second[known], fitted_batch), atol=1e-12)
    new = second["Metadata_Batch"] == "batch_0100"
    np.testing.assert_allclose(after[new][features], standardized(second[new], second[new]), atol=1e-12)


@pytest.mark.parametrize("method", ["harmony", "sphering+harmony"])
def test_harmony_cannot_be_locked(method, tmp_path, caplog):
    args = stage_args(tmp_path, tmp_path / "absent.parquet", method, locked=str(tmp_path / "earlier"))
    assert main(args) == 1
    assert f"method {method} cannot be locked: Harmony has no out-of-sample transform" in caplog.text


def test_a_changed_model_is_refused(tables, tmp_path, caplog):
    first, second = tables
    assert _run(tmp_path / "first", first, "sphering") == 0
    npz = tmp_path / "first/collection/dino/models/sphering.npz"
    npz.write_bytes(npz.read_bytes() + b"\0")
    assert _run(tmp_path / "second", second, "sphering", locked=str(tmp_path / "first/collection")) == 1
    assert "the model was changed" in caplog.text


def test_other_features_than_the_models_are_refused(tables, tmp_path, caplog):
    first, second = tables
    assert _run(tmp_path / "first", first, "combat") == 0
    fewer = second.drop(columns="dino_003")
    assert _run(tmp_path / "second", fewer, "combat", locked=str(tmp_path / "first/collection")) == 1
    assert "features differ from the locked model's (missing ['dino_003']" in caplog.text


def test_a_missing_model_is_named(tables, tmp_path, caplog):
    assert _run(tmp_path, tables[1], "combat", locked=str(tmp_path / "nowhere")) == 1
    assert f"no saved model at {tmp_path / 'nowhere/dino/models/combat.npz'}" in caplog.text
