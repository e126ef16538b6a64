"""Sphering equals pycytominer's ``Spherize`` (ZCA-cor) on a real LINCS plate."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pycytominer.operations import Spherize

from workflow_scripts.correct.sphering import whitening
from workflow_scripts.errors import InputError

EPSILON = 1e-6


@pytest.fixture(scope="module")
def lincs(shared_fixtures) -> pd.DataFrame:
    """384 wells x 454 normalized, feature-selected CellProfiler features; DMSO wells are the controls."""
    return pd.read_csv(shared_fixtures / "profiles/lincs-SQ00015054/SQ00015054_normalized_feature_select.csv.gz")


@pytest.mark.parametrize("samples", ["negcon", "all"])
def test_sphering_equals_pycytominer_spherize_on_lincs(lincs, samples):
    """Same whitening, fitted on the 24 DMSO wells (rank 23) or on all 384 wells (rank 383 < 454 features).

    Both sides compute one exact matrix by different routes: pycytominer by an
    SVD of the standardized rows (relative error ~ eps x cond), this stage by
    an eigendecomposition of their Gram matrix (~ eps x cond²). The tolerance
    is that bound, 10 x eps x cond² x max|output|: 1e-11 for the controls
    (cond 11), 5e-8 for all wells (cond 1.7e3); observed 1e-13 and 1e-10.
    """
    features = [column for column in lincs if not column.startswith("Metadata_")]
    values = lincs[features].to_numpy(np.float64)
    fit_rows = values[(lincs["Metadata_broad_sample"] == "DMSO").to_numpy()] if samples == "negcon" else values

    expected = Spherize(method="ZCA-cor", epsilon=EPSILON).fit(pd.DataFrame(fit_rows)).transform(pd.DataFrame(values))
    params = whitening(fit_rows, features, EPSILON)
    got = ((values - params["mean"]) / params["scale"]) @ params["W"]

    singular = np.linalg.svd((fit_rows - params["mean"]) / params["scale"], compute_uv=False)
    kept = singular[singular > singular[0] * max(fit_rows.shape) * np.finfo(float).eps]
    tolerance = 10 * np.finfo(float).eps * (kept[0] / kept[-1]) ** 2 * np.abs(expected.to_numpy()).max()
    np.testing.assert_allclose(got, expected.to_numpy(), rtol=0, atol=tolerance)


def test_sphering_whitens_the_rows_it_is_fitted_on():
    """Full rank: the fitted rows come out with identity covariance (up to epsilon)."""
    rng = np.random.default_rng(0)
    rows = rng.standard_normal((500, 6)) @ rng.standard_normal((6, 6))
    params = whitening(rows, [f"f{i}" for i in range(6)], 1e-12)
    whitened = ((rows - params["mean"]) / params["scale"]) @ params["W"]
    np.testing.assert_allclose(np.cov(whitened, rowvar=False), np.eye(6), atol=1e-9)
    np.testing.assert_allclose(params["W"], params["W"].T, atol=1e-12)


def test_sphering_names_constant_features():
    rows = np.column_stack([np.arange(5.0), np.ones(5)])
    with pytest.raises(InputError, match="without variation.*f_flat"):
        whitening(rows, ["f_ok", "f_flat"], EPSILON)
