"""Correction methods and their chains, fitted per group and applied plate by plate.

A method is one of ``none, sphering, harmony, combat, control_std`` or a
chain of them joined by ``+`` (``sphering+harmony``), applied left to right,
each step fitted on the previous step's output. Every step but Harmony has a
row-wise transform, applied one plate at a time (``groups``); those steps
can also be locked: their parameters then come from an earlier run's model,
and only batches that model lacks are estimated (control_std, combat).

A group with a single batch runs every correcting step as ``none``, with a
warning (there is no batch effect to remove). For Harmony, ``none`` keeps the
step's representation: the uncorrected PCs, so that plate types corrected
apart still share their output columns.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from workflow_scripts.correct import combat, control_std, harmony, sphering
from workflow_scripts.correct.batched import Params
from workflow_scripts.correct.groups import Group
from workflow_scripts.correct.models import GroupFit, Model, StepFit
from workflow_scripts.errors import InputError

METHODS = ("none", "sphering", "harmony", "combat", "control_std")


@dataclass(frozen=True)
class Lockable:
    """A step with a row-wise transform: fitted once, then applied to any rows, now or later."""

    fit: Callable[[np.ndarray, Sequence[str], Group, dict], Params]
    transform: Callable[[Params, np.ndarray, str], np.ndarray]
    fit_rows: Callable[[dict], str]
    extend: Callable[[np.ndarray, Sequence[str], Group, Params], tuple[Params, list[str]]] | None = None


LOCKABLE = {
    "sphering": Lockable(sphering.fit, sphering.transform, lambda settings: settings["sphering"]["samples"]),
    "control_std": Lockable(control_std.fit, control_std.transform, lambda settings: "negcon", control_std.extend),
    "combat": Lockable(combat.fit, combat.transform, lambda settings: "all", combat.extend),
}


@dataclass(frozen=True)
class Correction:
    """The corrected features and the model that made them."""

    values: np.ndarray
    model: Model
    warnings: list[str]


def parse_method(method: str) -> list[str]:
    """The steps of ``method``; an error naming any unknown one."""
    steps = method.split("+")
    unknown = [step for step in steps if step not in METHODS]
    if unknown:
        raise InputError(
            f"correction method {method!r}: unknown {', '.join(map(repr, unknown))}; "
            f"methods are {', '.join(METHODS)}, or chains of them joined by '+' such as sphering+harmony"
        )
    return steps


def require_lockable(method: str) -> None:
    """An error unless every step of ``method`` can be applied from a saved model."""
    if "harmony" in parse_method(method):
        raise InputError(
            f"correction.locked: method {method} cannot be locked: Harmony has no out-of-sample transform "
            "(its correction is fitted jointly with the rows it clusters), so new plates need a refit; "
            "sphering, combat and control_std, and chains of them, can be locked"
        )


def check_locked(model: Model, method: str, settings: dict, features: Sequence[str], where: str) -> None:
    """An error unless ``model`` was fitted for this method, these features and this batch grouping."""
    expected = {"method": method, "batch_key": settings["batch_key"], "by_plate_type": settings["by_plate_type"]}
    for key, value in expected.items():
        if getattr(model, key) != value:
            raise InputError(f"correction.locked: the model has {key} {getattr(model, key)!r}, this run {value!r}")
    if list(features) != model.features_in:
        missing = sorted(set(model.features_in) - set(features))
        extra = sorted(set(features) - set(model.features_in))
        raise InputError(
            f"{where}: features differ from the locked model's (missing {missing[:5]}, extra {extra[:5]}, "
            "or another order): lock the feature selection too"
        )


def run_chain(
    values: np.ndarray,
    features: Sequence[str],
    groups: Sequence[Group],
    method: str,
    settings: dict,
    threads: int,
    locked: Model | None = None,
) -> Correction:
    """Correct ``values`` (rows x features, float64; overwritten where the shape allows) group by group."""
    fits = [GroupFit(group.plate_type, []) for group in groups]
    warnings: list[str] = []
    features_out = list(features)
    for position, step in enumerate(parse_method(method)):
        if step == "harmony":
            values, features_out = _harmony(values, groups, fits, settings, threads, warnings)
            continue
        for group, fitted in zip(groups, fits):
            prior = locked.group(group.plate_type, "correction.locked").steps[position] if locked else None
            fitted.steps.append(_lockable(step, values, features_out, group, settings, prior, warnings))
    model = Model(method, settings["batch_key"], settings["by_plate_type"], list(features), features_out, fits)
    return Correction(values, model, warnings)


def _lockable(
    step: str,
    values: np.ndarray,
    features: Sequence[str],
    group: Group,
    settings: dict,
    prior: StepFit | None,
    warnings: list[str],
) -> StepFit:
    """Fit (or take from ``prior``) one step for one group, and apply it to the group's plates in place."""
    if step == "none" or (prior and prior.ran_as == "none"):
        return StepFit(step, "none", "none")
    if not prior and _single_batch(step, group, settings, warnings):
        return StepFit(step, "none", "none")
    method = LOCKABLE[step]
    if prior:
        params, new_batches = (
            method.extend(values, features, group, prior.params) if method.extend else (prior.params, [])
        )
        fitted = StepFit(step, step, "locked", params, new_batches)
    else:
        fitted = StepFit(step, step, method.fit_rows(settings), method.fit(values, features, group, settings))
    for plate in group.plates:
        values[plate.rows] = method.transform(fitted.params, values[plate.rows], plate.batch)
    return fitted


def _harmony(
    values: np.ndarray,
    groups: Sequence[Group],
    fits: list[GroupFit],
    settings: dict,
    threads: int,
    warnings: list[str],
) -> tuple[np.ndarray, list[str]]:
    """Every group as Harmony-corrected PCs; one number of PCs for all, so groups share columns."""
    n_components = min(settings["harmony"]["n_components"], values.shape[1], *(len(g.index) for g in groups))
    corrected = np.empty((len(values), n_components))
    for group, fitted in zip(groups, fits):
        if _single_batch("harmony", group, settings, warnings):
            corrected[group.index], params = harmony.principal_components(values[group.index], n_components)
            fitted.steps.append(StepFit("harmony", "none", "none", params))
            continue
        corrected[group.index], params = harmony.correct(values, group, n_components, settings, threads)
        fitted.steps.append(StepFit("harmony", "harmony", "all", params))
    return corrected, harmony.feature_names(n_components)


def _single_batch(step: str, group: Group, settings: dict, warnings: list[str]) -> bool:
    """Whether ``group`` has one batch only; if so, say that ``step`` runs as none."""
    if len(group.batches) > 1:
        return False
    warnings.append(
        f"{step}: {group.label} has a single {settings['batch_key']} ({next(iter(group.batches))}); "
        f"{step} runs as none" + (" (uncorrected PCs)" if step == "harmony" else "")
    )
    return True
