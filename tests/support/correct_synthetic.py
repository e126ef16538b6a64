"""Synthetic selected profiles with known biology and known batch effects, for the correct stage.

Every plate holds negative controls and every perturbation (so replicates
meet across batches); a perturbation moves a few features by a fixed
amount; wells carry correlated noise; then each batch multiplies every
feature by its own gain and adds its own shift (``x * gain_b + shift_b``),
the additive and multiplicative batch effects the corrections must remove.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from tests.support.settings import section
from workflow_scripts.correct.chain import Correction, run_chain
from workflow_scripts.correct.groups import plate_groups


@dataclass(frozen=True)
class Design:
    """Sizes and effect strengths of a synthetic collection."""

    batches: int = 4
    plates_per_batch: int = 2
    wells_per_plate: int = 64
    negcon_per_plate: int = 16
    perturbations: int = 12
    features: int = 24
    effect: float = 2.0
    additive: float = 2.0
    multiplicative: float = 0.4
    plate_types: tuple[str, ...] = ()
    prefix: str = "dino"
    seed: int = 0

    @property
    def rows(self) -> int:
        return self.batches * self.plates_per_batch * self.wells_per_plate


def well_names(count: int) -> list[str]:
    """``count`` wells of a 384-well plate in row-major order (A01, A02, …)."""
    return [f"{chr(ord('A') + i // 24)}{i % 24 + 1:02d}" for i in range(count)]


def synthetic_profiles(design: Design = Design(), batch_offset: int = 0) -> pd.DataFrame:
    """One table of profiles in the pycytominer convention (float64 features, no NaN).

    ``batch_offset`` numbers the batches from there, with effects drawn anew,
    to make plates of a batch an earlier table did not have.
    """
    rng = np.random.default_rng(design.seed)
    biology = rng.standard_normal((design.perturbations, design.features)) * design.effect
    biology *= rng.random((design.perturbations, design.features)) < 0.3
    mixing = np.eye(design.features) + rng.standard_normal((design.features, design.features)) * 0.3
    batch_rng = np.random.default_rng([design.seed, batch_offset])
    shifts = batch_rng.standard_normal((design.batches, design.features)) * design.additive
    gains = np.exp(batch_rng.standard_normal((design.batches, design.features)) * design.multiplicative)

    wells = design.wells_per_plate
    treated = wells - design.negcon_per_plate
    layout = np.concatenate([np.full(design.negcon_per_plate, -1), np.arange(treated) % design.perturbations])
    plates = design.batches * design.plates_per_batch
    perturbation = np.tile(layout, plates)
    batch = np.repeat(np.arange(design.batches), design.plates_per_batch * wells)
    noise_rng = np.random.default_rng([design.seed, batch_offset, 1])
    values = noise_rng.standard_normal((design.rows, design.features)) @ mixing
    values[perturbation >= 0] += biology[perturbation[perturbation >= 0]]
    values = values * gains[batch] + shifts[batch]

    names = [f"batch_{batch_offset + b:04d}" for b in range(design.batches)]
    table = pd.DataFrame(
        {
            "Metadata_Source": "source_1",
            "Metadata_Batch": np.asarray(names)[batch],
            "Metadata_Plate": [
                f"{names[b]}_P{p}"
                for b in range(design.batches)
                for p in range(design.plates_per_batch)
                for _ in range(wells)
            ],
            "Metadata_Well": well_names(wells) * plates,
            "Metadata_PertType": np.where(perturbation < 0, "negcon", "trt"),
            "Metadata_Perturbation": np.where(perturbation < 0, "DMSO", np.char.add("pert_", perturbation.astype(str))),
        }
    )
    if design.plate_types:
        table["Metadata_PlateType"] = np.asarray(design.plate_types)[batch % len(design.plate_types)]
    features = pd.DataFrame(values, columns=[f"{design.prefix}_{j:03d}" for j in range(design.features)])
    return pd.concat([table, features], axis=1)


def feature_columns(table: pd.DataFrame) -> list[str]:
    return [column for column in table if not column.startswith("Metadata_")]


def corrected(table: pd.DataFrame, method: str, threads: int = 1, **overrides) -> Correction:
    """``run_chain`` on ``table`` as the stage runs it, with ``correction`` settings ``overrides``."""
    settings = section("correction", **overrides)
    metadata = pa.Table.from_pandas(table.filter(like="Metadata_"), preserve_index=False)
    groups = plate_groups(metadata, settings["batch_key"], settings["by_plate_type"], Path("synthetic"))
    values = np.array(table[feature_columns(table)].to_numpy(np.float64), order="F")
    return run_chain(values, feature_columns(table), groups, method, settings, threads)


def stage_args(collection: Path, selected: Path, method: str, features: str = "dino", **correction) -> list[str]:
    """The correct stage's command line as the rule builds it, outputs under ``collection/{features}``."""
    out = collection / features
    return [
        "--settings",
        json.dumps({"correction": correction}),
        "--input",
        f"selected={selected}",
        "--output",
        f"corrected={out}/corrected/{method}.parquet",
        "--output",
        f"model={out}/models/{method}.npz",
        "--output",
        f"lineage={out}/models/{method}.json",
        "--wildcard",
        f"features={features}",
        "--wildcard",
        f"method={method}",
        "--threads",
        "1",
    ]
