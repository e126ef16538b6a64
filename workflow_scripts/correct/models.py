"""Fitted corrections on disk: parameters in ``models/{method}.npz``, lineage in ``models/{method}.json``.

The npz holds every fitted array under ``g{group}.s{step}.{name}`` and the
model's structure (method, steps per plate type, features) as JSON under
``structure``: it is the whole of what a locked run applies. The JSON
says what it is and where it came from: method and chain steps, batch key,
per plate type the batches, the plates and wells the run saw and which step
was fitted on which of them, package versions, the run it was locked from,
and the npz's sha256, which a locked run checks before using it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from workflow_scripts.atomic import atomic_path, write_text_atomic
from workflow_scripts.correct.batched import Params
from workflow_scripts.correct.groups import Group
from workflow_scripts.errors import InputError


@dataclass
class StepFit:
    """One chain step as fitted (or applied from a locked model) for one group.

    ``fit`` says where its parameters came from: ``negcon`` or ``all`` (fitted
    here on those rows of the group), ``locked`` (taken from the locked
    model; ``new_batches`` were estimated here), or ``none`` (the step ran
    as ``none``).
    """

    step: str
    ran_as: str
    fit: str
    params: Params = field(default_factory=dict)
    new_batches: list[str] = field(default_factory=list)


@dataclass
class GroupFit:
    """The chain's steps for one plate type (``None``: all plates corrected together)."""

    plate_type: str | None
    steps: list[StepFit]


@dataclass(frozen=True)
class Model:
    """A whole correction: the method, how batches were named, and the steps fitted per group."""

    method: str
    batch_key: str
    by_plate_type: bool
    features_in: list[str]
    features_out: list[str]
    groups: list[GroupFit]

    def structure(self) -> dict:
        """Everything but the arrays, as JSON-able data (stored in the npz and in the lineage)."""
        return {
            "method": self.method,
            "steps": self.method.split("+"),
            "batch_key": self.batch_key,
            "by_plate_type": self.by_plate_type,
            "features_in": self.features_in,
            "features_out": self.features_out,
            "groups": [
                {
                    "plate_type": fitted.plate_type,
                    "steps": [
                        {"step": step.step, "ran_as": step.ran_as, "fit": step.fit, "new_batches": step.new_batches}
                        for step in fitted.steps
                    ],
                }
                for fitted in self.groups
            ],
        }

    def group(self, plate_type: str | None, where: str) -> GroupFit:
        """The fit of ``plate_type``; an error if the model has none."""
        for fitted in self.groups:
            if fitted.plate_type == plate_type:
                return fitted
        raise InputError(f"{where}: the locked model has no plates of type {plate_type} to apply")


def locked_paths(locked: str, features: str, method: str) -> tuple[Path, Path]:
    """Where an earlier run's collection folder keeps the model of ``features`` and ``method``."""
    folder = Path(locked) / features / "models"
    return folder / f"{method}.npz", folder / f"{method}.json"


def save_model(model: Model, npz: Path, lineage_path: Path, lineage: dict) -> str:
    """Write the parameters, then ``lineage`` with their sha256; returns the sha256.

    The npz carries the model's structure as JSON too, so the sha256 covers
    everything a locked run reads.
    """
    arrays = {"structure": np.asarray(json.dumps(model.structure(), sort_keys=True))}
    for g, fitted in enumerate(model.groups):
        for s, step in enumerate(fitted.steps):
            arrays |= {f"g{g}.s{s}.{name}": value for name, value in step.params.items()}
    with atomic_path(npz) as partial, partial.open("wb") as stream:
        np.savez(stream, **arrays)
    digest = sha256(npz)
    record = {**lineage, "npz": npz.name, "npz_sha256": digest}
    write_text_atomic(json.dumps(record, indent=1, sort_keys=True) + "\n", lineage_path)
    return digest


def load_model(npz: Path, lineage_path: Path) -> tuple[Model, str]:
    """A saved model and its sha256, after checking the npz against the sha256 its lineage records."""
    for path in (npz, lineage_path):
        if not path.is_file():
            raise InputError(f"correction.locked: no saved model at {path}")
    recorded = json.loads(lineage_path.read_text()).get("npz_sha256")
    digest = sha256(npz)
    if digest != recorded:
        raise InputError(
            f"correction.locked: {npz} has sha256 {digest}, but {lineage_path} records {recorded}: "
            "the model was changed or is not the one its lineage describes"
        )
    with np.load(npz, allow_pickle=False) as stored:
        arrays = dict(stored)
    structure = json.loads(str(arrays["structure"]))
    groups = [
        GroupFit(
            described["plate_type"],
            [
                StepFit(step["step"], step["ran_as"], "locked", _step_arrays(arrays, g, s))
                for s, step in enumerate(described["steps"])
            ],
        )
        for g, described in enumerate(structure["groups"])
    ]
    model = Model(
        structure["method"],
        structure["batch_key"],
        structure["by_plate_type"],
        structure["features_in"],
        structure["features_out"],
        groups,
    )
    return model, digest


def lineage_record(model: Model, groups: list[Group], **context: object) -> dict:
    """The lineage JSON: the model's structure, and per group its batches and the plates and wells it saw.

    ``context`` adds the run's facts (settings, warnings, package versions,
    the locked model it came from).
    """
    structure = model.structure()
    for described, group in zip(structure["groups"], groups):
        described |= {
            "n_profiles": len(group.index),
            "batches": list(group.batches),
            "plates": {plate.name: plate.wells.tolist() for plate in group.plates},
        }
    return {"stage": "correct", **structure, **context}


def sha256(path: Path) -> str:
    """The file's sha256, read in blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _step_arrays(arrays: dict[str, np.ndarray], group: int, step: int) -> Params:
    prefix = f"g{group}.s{step}."
    return {key.removeprefix(prefix): value for key, value in arrays.items() if key.startswith(prefix)}
