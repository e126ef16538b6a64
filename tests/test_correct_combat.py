"""ComBat written with per-batch sums equals the library (neuroCombat, sva's algorithm) on small data."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from tests.support.correct_synthetic import Design, feature_columns, synthetic_profiles
from workflow_scripts.correct import combat
from workflow_scripts.correct.groups import plate_groups
from workflow_scripts.errors import InputError

neuro = pytest.importorskip("neuroCombat")

DESIGN = Design(batches=3, wells_per_plate=30, negcon_per_plate=6, features=16)


@pytest.fixture(scope="module")
def table():
    return synthetic_profiles(DESIGN)


def _group(table):
    metadata = pa.Table.from_pandas(table.filter(like="Metadata_"), preserve_index=False)
    return plate_groups(metadata, "Metadata_Batch", True, Path("synthetic"))[0]


def _neurocombat(table, ref_batch=None):
    """neuroCombat's harmonized rows (it prints progress; it takes features x samples)."""
    values = table[feature_columns(table)].to_numpy(np.float64)
    with contextlib.redirect_stdout(io.StringIO()):
        result = neuro.neuroCombat(values.T.copy(), table[["Metadata_Batch"]], "Metadata_Batch", ref_batch=ref_batch)
    return result["data"].T


def _applied(params, values, group):
    out = np.array(values)
    for plate in group.plates:
        out[plate.rows] = combat.transform(params, values[plate.rows], plate.batch)
    return out


def test_combat_equals_neurocombat(table):
    values = table[feature_columns(table)].to_numpy(np.float64)
    group = _group(table)
    params = combat.fit(values, feature_columns(table), group, {})
    np.testing.assert_allclose(_applied(params, values, group), _neurocombat(table), rtol=0, atol=1e-12)


def test_new_batch_estimate_equals_neurocombat_reference_batch(table, monkeypatch):
    """A batch a locked model lacks is estimated against the model's location and scale.

    With a model whose reference is batch_0001's own mean and variance, the
    other batches must come out as neuroCombat's ``ref_batch`` mode makes them
    (neuroCombat 0.2.12 still calls ``np.int``, gone since NumPy 1.24).
    """
    monkeypatch.setattr(np, "int", int, raising=False)
    reference = "batch_0001"
    values = table[feature_columns(table)].to_numpy(np.float64)
    group = _group(table)
    rows = values[group.batches[reference]]
    model = {
        "grand_mean": rows.mean(axis=0),
        "var_pooled": rows.var(axis=0),
        "batches": np.asarray([reference]),
        "gamma": np.zeros((1, values.shape[1])),
        "delta": np.ones((1, values.shape[1])),
    }
    extended, new = combat.extend(values, feature_columns(table), group, model)
    assert new == ["batch_0000", "batch_0002"]
    np.testing.assert_array_equal(extended["gamma"][0], model["gamma"][0])
    expected = _neurocombat(table, ref_batch=reference)
    np.testing.assert_allclose(_applied(extended, values, group), expected, rtol=0, atol=1e-12)


def test_combat_refuses_a_batch_of_one_profile(table):
    single = table.drop(index=table.index[(table["Metadata_Batch"] == "batch_0002")][1:])
    values = single[feature_columns(single)].to_numpy(np.float64)
    with pytest.raises(InputError, match="batch_0002.*at least 2"):
        combat.fit(values, feature_columns(single), _group(single.reset_index(drop=True)), {})
