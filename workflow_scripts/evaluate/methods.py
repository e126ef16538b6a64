"""Every KPI of every correction method of one feature set, in one process.

The methods' tables hold the same wells in the same order (the correct stage
keeps rows as read), so everything that depends on labels alone — masks,
folds, ranked lists, null distributions — is built once and reused for each
method, and the libraries' start-up (scib-metrics' JAX, copairs) is paid once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from workflow_scripts.correct.profiles import Profiles, read_profiles
from workflow_scripts.errors import InputError
from workflow_scripts.evaluate.batch import BatchEvaluator
from workflow_scripts.evaluate.kpi import CATALOGUE, Kpi
from workflow_scripts.evaluate.retrieval import BiologyEvaluator


@dataclass(frozen=True)
class Evaluation:
    """The three tables the evaluate stage writes for one feature set."""

    kpis: pd.DataFrame
    activity: pd.DataFrame
    consensus: pd.DataFrame


class MethodEvaluator:
    """Batch and biology KPIs of one feature set, prepared once from the wells' metadata."""

    def __init__(self, meta: pd.DataFrame, features: str, settings: Mapping[str, Any], threads: int) -> None:
        self.features = features
        self.batch = BatchEvaluator(meta, settings, threads)
        self.biology = BiologyEvaluator(meta, settings, threads)

    def evaluate(self, method: str, x: np.ndarray, feature_names: Sequence[str]) -> Evaluation:
        """One method's KPI rows, activity and consensus tables, keyed by feature set and method."""
        keys = {"features": self.features, "method": method}
        biology = self.biology.evaluate(x, feature_names)
        rows = [*self.batch.evaluate(x), *self.batch.label_silhouettes(x), *biology.kpis]
        kpis = pd.DataFrame([row.row(**keys) for row in _catalogue_order(rows)])
        return Evaluation(kpis, _keyed(biology.activity, keys), _keyed(biology.consensus, keys))


def method_of(path: Path) -> str:
    """``…/corrected/sphering+harmony.parquet`` → ``sphering+harmony``."""
    return Path(path).name.removesuffix(".parquet")


def evaluate_methods(paths: list[Path], features: str, settings: Mapping[str, Any], threads: int) -> Evaluation:
    """Read each method's corrected profiles in turn and compute all KPIs (``settings``: ``evaluation``)."""
    first = read_profiles(paths[0])
    evaluator = MethodEvaluator(first.metadata.to_pandas(), features, settings, threads)
    results = []
    for path in paths:
        profiles = first if path == paths[0] else read_profiles(path)
        _check_same_wells(first, profiles)
        results.append(evaluator.evaluate(method_of(path), profiles.values, profiles.features))
    return Evaluation(*(pd.concat([getattr(r, name) for r in results], ignore_index=True) for name in
                        ("kpis", "activity", "consensus")))  # fmt: skip


def _check_same_wells(first: Profiles, other: Profiles) -> None:
    keys = ["Metadata_Plate", "Metadata_Well"]
    if not first.metadata.select(keys).equals(other.metadata.select(keys)):
        raise InputError(
            f"{other.path}: its wells differ from {first.path}'s; every method must correct the same wells"
        )


def _catalogue_order(rows: list[Kpi]) -> list[Kpi]:
    order = {name: position for position, name in enumerate(CATALOGUE)}
    return sorted(rows, key=lambda row: order[row.kpi])


def _keyed(table: pd.DataFrame, keys: Mapping[str, str]) -> pd.DataFrame:
    """``table`` with the feature set and method as its first columns."""
    return pd.concat([pd.DataFrame(dict(keys), index=table.index), table], axis=1)
