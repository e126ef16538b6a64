"""Parameters kept one row per batch (control_std, ComBat), and their growth in locked runs.

A fitted model stores its batches as the string array ``batches`` and each
per-batch parameter as a matrix with one row per batch, in that order. A
locked run looks batches up there, and appends rows for batches the model
has not seen; rows already there are never touched.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from workflow_scripts.correct.groups import Group
from workflow_scripts.errors import InputError

Params = dict[str, np.ndarray]


def batch_position(params: Params, batch: str) -> int:
    """The row of ``batch`` in the per-batch parameters."""
    found = np.flatnonzero(params["batches"] == batch)
    if len(found) != 1:
        raise InputError(f"batch {batch!r} has no fitted parameters")
    return int(found[0])


def unseen_batches(params: Params, group: Group) -> dict[str, np.ndarray]:
    """The group's batches that ``params`` lacks, with their rows."""
    known = set(params["batches"].tolist())
    return {name: rows for name, rows in group.batches.items() if name not in known}


def per_batch(names: Sequence[str], **rows: list[np.ndarray]) -> Params:
    """Per-batch parameters from one vector per batch and parameter."""
    return {"batches": np.asarray(list(names), dtype=str), **{key: np.vstack(value) for key, value in rows.items()}}


def appended(params: Params, more: Params) -> Params:
    """``params`` with the batches of ``more`` added after its own."""
    return {key: np.concatenate([value, more[key]]) if key in more else value for key, value in params.items()}
