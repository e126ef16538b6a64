"""Each method on synthetic profiles with known batch effects: batch signal goes, biology stays."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import silhouette_score

from tests.support.correct_synthetic import Design, corrected, feature_columns, synthetic_profiles
from workflow_scripts.correct.chain import parse_method
from workflow_scripts.correct.harmony import principal_components
from workflow_scripts.errors import InputError

CORRECTING = ["sphering", "harmony", "combat", "control_std", "sphering+harmony"]


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return synthetic_profiles(Design())


def _treated(table: pd.DataFrame) -> np.ndarray:
    return (table["Metadata_PertType"] == "trt").to_numpy()


def batch_silhouette(table: pd.DataFrame, values: np.ndarray) -> float:
    """Cosine silhouette of the treated wells by batch: how separable the batches are."""
    treated = _treated(table)
    return silhouette_score(values[treated], table["Metadata_Batch"][treated], metric="cosine")


def replicate_agreement(table: pd.DataFrame, values: np.ndarray) -> tuple[float, float]:
    """Mean cosine similarity of same-perturbation pairs across batches, and of different-perturbation pairs."""
    treated = _treated(table)
    unit = values[treated] / np.linalg.norm(values[treated], axis=1, keepdims=True)
    similarity = unit @ unit.T
    perturbation = table["Metadata_Perturbation"].to_numpy()[treated]
    batch = table["Metadata_Batch"].to_numpy()[treated]
    same = (perturbation[:, None] == perturbation[None]) & (batch[:, None] != batch[None])
    return similarity[same].mean(), similarity[perturbation[:, None] != perturbation[None]].mean()


def test_none_returns_the_profiles(table):
    result = corrected(table, "none")
    np.testing.assert_array_equal(result.values, table[feature_columns(table)].to_numpy())
    assert result.model.features_out == feature_columns(table)


@pytest.mark.parametrize("method", CORRECTING)
def test_correcting_methods_lower_batch_separability(table, method):
    before = batch_silhouette(table, table[feature_columns(table)].to_numpy())
    after = batch_silhouette(table, corrected(table, method).values)
    assert before > 0.25
    assert after < before / 3


@pytest.mark.parametrize("method", ["sphering", "harmony", "sphering+harmony"])
def test_sphering_and_harmony_keep_replicates_together(table, method):
    same, different = replicate_agreement(table, corrected(table, method).values)
    assert same > different + 0.2


def test_harmony_outputs_named_pcs_capped_by_the_data(table):
    result = corrected(table, "harmony", harmony={"n_components": 500})
    assert result.model.features_out == [f"harmony_{i:03d}" for i in range(24)]
    assert result.values.shape == (len(table), 24)


def test_harmony_is_deterministic_for_any_number_of_threads(table):
    first = corrected(table, "harmony", harmony={"n_components": 8})
    second = corrected(table, "harmony", threads=2, harmony={"n_components": 8})
    np.testing.assert_array_equal(first.values, second.values)


def test_chain_applies_steps_left_to_right(table):
    sphered = corrected(table, "sphering")
    chained = corrected(table, "sphering+control_std")
    sphered_table = table.copy()
    sphered_table[feature_columns(table)] = sphered.values
    np.testing.assert_array_equal(chained.values, corrected(sphered_table, "control_std").values)
    assert [step.step for step in chained.model.groups[0].steps] == ["sphering", "control_std"]


def test_plate_types_are_corrected_apart():
    """With by_plate_type, one type's rows come out as if the other type were absent."""
    table = synthetic_profiles(Design(plate_types=("ORF", "CRISPR")))
    orf = table[table["Metadata_PlateType"] == "ORF"].reset_index(drop=True)
    together = corrected(table, "combat")
    alone = corrected(orf, "combat")
    np.testing.assert_array_equal(together.values[(table["Metadata_PlateType"] == "ORF").to_numpy()], alone.values)
    assert [group.plate_type for group in together.model.groups] == ["CRISPR", "ORF"]
    pooled = corrected(table, "combat", by_plate_type=False)
    assert [group.plate_type for group in pooled.model.groups] == [None]


@pytest.mark.parametrize("method", ["sphering", "combat", "control_std"])
def test_single_batch_runs_as_none_with_a_warning(table, method):
    one = table[table["Metadata_Batch"] == "batch_0000"].reset_index(drop=True)
    result = corrected(one, method)
    np.testing.assert_array_equal(result.values, one[feature_columns(one)].to_numpy())
    assert result.warnings == [f"{method}: all plates has a single Metadata_Batch (batch_0000); {method} runs as none"]
    assert result.model.groups[0].steps[0].ran_as == "none"


def test_single_batch_harmony_keeps_the_uncorrected_pcs(table):
    one = table[table["Metadata_Batch"] == "batch_0000"].reset_index(drop=True)
    result = corrected(one, "harmony", harmony={"n_components": 5})
    expected, _ = principal_components(one[feature_columns(one)].to_numpy(np.float64), 5)
    np.testing.assert_allclose(result.values, expected, rtol=0, atol=1e-12)
    assert "runs as none (uncorrected PCs)" in result.warnings[0]


def test_batch_key_picks_the_batches(table):
    result = corrected(table, "control_std", batch_key="Metadata_Plate")
    assert len(result.model.groups[0].steps[0].params["batches"]) == table["Metadata_Plate"].nunique()


def test_control_std_needs_controls_in_every_batch(table):
    no_controls = table[~((table["Metadata_Batch"] == "batch_0002") & (table["Metadata_PertType"] == "negcon"))]
    with pytest.raises(InputError, match="batch_0002.*0 negative controls"):
        corrected(no_controls.reset_index(drop=True), "control_std")


@pytest.mark.parametrize("method", ["mnn", "sphering+scvi", "", "sphering+"])
def test_unknown_methods_are_refused(method):
    with pytest.raises(InputError, match="unknown"):
        parse_method(method)
