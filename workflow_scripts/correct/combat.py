"""ComBat (Johnson et al. 2007; R ``sva::ComBat``, parametric empirical Bayes, no covariates).

Written here with per-batch sums rather than taken from a library: the
Python implementations (inmoose's ``pycombat_norm``, neuroCombat) build the
n x batches design matrix and solve with it, 8 GB at a million profiles in
a thousand batches, and ComBat needs nothing but each batch's count, mean
and sum of squared deviations. tests/test_correct_combat.py checks the
numbers against neuroCombat on small data.

The model: the pooled location ``grand_mean`` (mean of all rows) and scale
``var_pooled`` (within-batch residual variance over all rows), and per batch
the shrunken shift ``gamma`` and gain ``delta`` in standardized units. A row
of batch b becomes ``((x - m)/sqrt(v) - gamma_b) / sqrt(delta_b) * sqrt(v) + m``.

Locked runs keep ``grand_mean`` and ``var_pooled`` as the reference: a
batch the model knows uses its stored ``gamma``/``delta``; a new batch gets
its own, estimated against that fixed reference exactly as ComBat with a
reference batch (``ref.batch``) estimates every non-reference batch, since
each batch's estimate reads only its own rows and the reference's location
and scale.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from workflow_scripts.correct.batched import Params, appended, batch_position, per_batch, unseen_batches
from workflow_scripts.correct.groups import Group
from workflow_scripts.correct.profiles import require_variation
from workflow_scripts.errors import InputError

CONVERGENCE = 1e-4  # sva's it.sol default
MAX_ITERATIONS = 10_000  # a bound sva lacks; it converges in tens


def fit(values: np.ndarray, features: Sequence[str], group: Group, settings: dict) -> Params:
    """The pooled reference and every batch's shrunken shift and gain."""
    moments = _moments(values, group.batches, group)
    counts = np.array([count for count, _, _ in moments.values()], dtype=np.float64)
    means = np.vstack([mean for _, mean, _ in moments.values()])
    grand_mean = counts @ means / counts.sum()
    var_pooled = np.sum([squares for _, _, squares in moments.values()], axis=0) / counts.sum()
    require_variation(var_pooled, features, f"combat: within the batches of {group.label}")
    return {"grand_mean": grand_mean, "var_pooled": var_pooled, **_estimates(moments, grand_mean, var_pooled)}


def extend(values: np.ndarray, features: Sequence[str], group: Group, params: Params) -> tuple[Params, list[str]]:
    """Locked run: batches the model lacks, estimated against the model's reference."""
    unseen = unseen_batches(params, group)
    if not unseen:
        return params, []
    moments = _moments(values, unseen, group)
    return appended(params, _estimates(moments, params["grand_mean"], params["var_pooled"])), list(unseen)


def transform(params: Params, block: np.ndarray, batch: str) -> np.ndarray:
    """One batch's rows with its shift and gain removed."""
    position = batch_position(params, batch)
    spread = np.sqrt(params["var_pooled"])
    standardized = (block - params["grand_mean"]) / spread
    adjusted = (standardized - params["gamma"][position]) / np.sqrt(params["delta"][position])
    return adjusted * spread + params["grand_mean"]


def _moments(
    values: np.ndarray, batches: dict[str, np.ndarray], group: Group
) -> dict[str, tuple[int, np.ndarray, np.ndarray]]:
    """Per batch: rows, mean, and sum of squared deviations from that mean."""
    moments = {}
    for name, rows in batches.items():
        if len(rows) < 2:
            raise InputError(f"combat: batch {name} ({group.label}) has {len(rows)} profile; ComBat needs at least 2")
        block = values[rows]
        mean = block.mean(axis=0)
        block -= mean
        moments[name] = (len(rows), mean, np.einsum("ij,ij->j", block, block))
    return moments


def _estimates(
    moments: dict[str, tuple[int, np.ndarray, np.ndarray]], grand_mean: np.ndarray, var_pooled: np.ndarray
) -> Params:
    """Each batch's empirical-Bayes shift and gain, in units of the reference."""
    gammas, deltas = [], []
    for count, mean, squares in moments.values():
        gamma_hat = (mean - grand_mean) / np.sqrt(var_pooled)
        gamma, delta = _shrunk(gamma_hat, squares / (count - 1) / var_pooled, count)
        gammas.append(gamma)
        deltas.append(delta)
    return per_batch(list(moments), gamma=gammas, delta=deltas)


def _shrunk(gamma_hat: np.ndarray, variance: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """sva's ``it.sol``: posterior shift and gain, with priors pooled over the batch's features.

    ``variance`` is the batch's variance (ddof 1) in reference units. Where it
    is 0 (a feature constant within the batch) the gain starts from 1, as
    neuroCombat does, instead of dividing by zero.
    """
    delta_hat = np.where(variance == 0, 1.0, variance)
    gamma_bar, tau2 = gamma_hat.mean(), gamma_hat.var(ddof=1)
    mean, var = delta_hat.mean(), delta_hat.var(ddof=1)
    a_prior, b_prior = (2 * var + mean**2) / var, (mean * var + mean**3) / var
    gamma_old, delta_old = gamma_hat, delta_hat
    for _ in range(MAX_ITERATIONS):
        gamma = (tau2 * count * gamma_hat + delta_old * gamma_bar) / (tau2 * count + delta_old)
        squares = (count - 1) * variance + count * (gamma_hat - gamma) ** 2
        delta = (0.5 * squares + b_prior) / (count / 2.0 + a_prior - 1.0)
        change = max(np.max(np.abs(gamma - gamma_old) / gamma_old), np.max(np.abs(delta - delta_old) / delta_old))
        if not change > CONVERGENCE:
            break
        gamma_old, delta_old = gamma, delta
    return gamma, delta
