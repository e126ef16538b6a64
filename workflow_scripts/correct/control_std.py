"""Control-anchored standardization: each batch centred and scaled by its own negative controls.

The tabular analogue of RxRx1's AdaBN (re-estimating normalization
statistics per batch): a batch's technical shift and gain are read off the
wells that carry no perturbation, so nothing is borrowed across batches and
a new batch needs only its own controls. Mean and population standard
deviation (ddof 0), as pycytominer's ``standardize``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from workflow_scripts.correct.batched import Params, appended, batch_position, per_batch, unseen_batches
from workflow_scripts.correct.groups import Group
from workflow_scripts.correct.profiles import require_variation
from workflow_scripts.errors import InputError


def fit(values: np.ndarray, features: Sequence[str], group: Group, settings: dict) -> Params:
    """Centre and scale of every batch of ``group``, from its negative controls."""
    return _from_controls(values, features, group, group.batches)


def extend(values: np.ndarray, features: Sequence[str], group: Group, params: Params) -> tuple[Params, list[str]]:
    """Locked run: batches the model lacks get their own controls' centre and scale."""
    unseen = unseen_batches(params, group)
    if not unseen:
        return params, []
    return appended(params, _from_controls(values, features, group, unseen)), list(unseen)


def transform(params: Params, block: np.ndarray, batch: str) -> np.ndarray:
    """One batch's rows, standardized by that batch's controls."""
    position = batch_position(params, batch)
    return (block - params["center"][position]) / params["scale"][position]


def _from_controls(values: np.ndarray, features: Sequence[str], group: Group, batches: dict[str, np.ndarray]) -> Params:
    centers, scales = [], []
    for name, rows in batches.items():
        controls = values[group.controls(rows)]
        if len(controls) < 2:
            raise InputError(
                f"control_std: batch {name} ({group.label}) has {len(controls)} negative controls "
                "(Metadata_PertType 'negcon'); it needs at least 2"
            )
        scale = controls.std(axis=0)
        require_variation(scale, features, f"control_std: negative controls of batch {name}")
        centers.append(controls.mean(axis=0))
        scales.append(scale)
    return per_batch(list(batches), center=centers, scale=scales)
