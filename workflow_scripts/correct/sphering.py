"""ZCA-cor whitening fitted on the negative controls, as pycytominer's ``Spherize``.

The seed DINO paper's batch correction: standardize each feature by the
fit rows' mean and population standard deviation, then rotate by
``W = V diag(sqrt(n-1) / (s + epsilon)) V^T``, where ``s`` and ``V`` are the
singular values and right singular vectors of the standardized fit matrix
(n rows). Fitted on the controls, it makes the controls' correlation the
identity, so directions along which control wells vary (batch, plate layout)
are shrunk and perturbation effects stand out.

``epsilon`` is added to the singular values, exactly where pycytominer adds
it (not to the eigenvalues of the correlation matrix). Directions beyond the
numerical rank (fewer fit rows than features) get the weight of the smallest
kept singular value, which is what pycytominer's padding of its SVD amounts
to, without its arbitrary null-space basis.

``s`` and ``V`` come from the eigendecomposition of the features' Gram matrix
(features x features) instead of an SVD of the rows: the same matrix from one
pass over the rows, whatever their number (pycytominer's full SVD builds an
n x n matrix). The price is relative error of order
``machine epsilon x condition number²`` instead of ``x condition number``,
1e-11 on the LINCS plate (tests/test_correct_sphering.py), and a rank cut
at singular values below ``sqrt(max(n, d) x machine epsilon)`` of the largest
(pycytominer's ``matrix_rank`` cuts at ``max(n, d) x machine epsilon``; the
Gram matrix cannot resolve values in between).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from workflow_scripts.correct.batched import Params
from workflow_scripts.correct.groups import Group
from workflow_scripts.correct.profiles import require_variation
from workflow_scripts.errors import InputError


def fit(values: np.ndarray, features: Sequence[str], group: Group, settings: dict) -> Params:
    """Whitening of ``group`` fitted on its negative controls, or on all its rows."""
    options = settings["sphering"]
    rows = group.controls(group.index) if options["samples"] == "negcon" else group.index
    if len(rows) < 2:
        raise InputError(
            f"sphering: {group.label} has {len(rows)} {options['samples']} rows to fit on; it needs at least 2 "
            "(negative controls are Metadata_PertType 'negcon'; correction.sphering.samples: all fits on every row)"
        )
    return whitening(values[rows], features, options["epsilon"])


def whitening(fit_rows: np.ndarray, features: Sequence[str], epsilon: float) -> Params:
    """Mean, scale and ZCA-cor matrix ``W`` of ``fit_rows`` (rows x features)."""
    mean = fit_rows.mean(axis=0)
    standardized = fit_rows - mean
    scale = np.sqrt(np.mean(standardized * standardized, axis=0))
    require_variation(scale, features, "sphering: the rows it is fitted on")
    standardized /= scale
    eigenvalues, vectors = np.linalg.eigh(standardized.T @ standardized)
    eigenvalues, vectors = eigenvalues[::-1], vectors[:, ::-1]
    rank = int(np.sum(eigenvalues > eigenvalues[0] * max(standardized.shape) * np.finfo(np.float64).eps))
    weights = np.sqrt(len(fit_rows) - 1) / (np.sqrt(eigenvalues[:rank]) + epsilon)
    kept = vectors[:, :rank]
    matrix = (kept * weights) @ kept.T
    if rank < len(eigenvalues):
        matrix += weights[-1] * (np.eye(len(eigenvalues)) - kept @ kept.T)
    return {"mean": mean, "scale": scale, "W": matrix}


def transform(params: Params, block: np.ndarray, batch: str) -> np.ndarray:
    """Rows whitened with the fitted matrix (the batch plays no part)."""
    return ((block - params["mean"]) / params["scale"]) @ params["W"]
