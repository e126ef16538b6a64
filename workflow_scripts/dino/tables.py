"""Per-field and per-well embedding tables from per-crop embeddings."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class FieldRecord:
    """What the recipe decided for one field."""

    well: str
    field: int
    n_crops: int
    n_kept: int
    otsu: float
    constant_channels: tuple[str, ...]

    @property
    def usable(self) -> bool:
        return not self.constant_channels


def feature_names(width: int) -> list[str]:
    """``dino_000`` … in embedding order."""
    return [f"dino_{i:03d}" for i in range(width)]


def field_table(records: list[FieldRecord], embeddings: np.ndarray, owners: np.ndarray) -> pd.DataFrame:
    """One row per embedded field: its counts, Otsu threshold and the mean of its kept crops."""
    crops = pd.DataFrame(embeddings.astype(np.float64), columns=feature_names(embeddings.shape[1]))
    means = crops.groupby(owners).mean()
    used = [records[i] for i in means.index]
    keys = pd.DataFrame(
        {
            "Metadata_Well": pd.array([r.well for r in used], dtype="string"),
            "Metadata_Field": np.array([r.field for r in used], dtype=np.int64),
            "Metadata_n_crops": np.array([r.n_crops for r in used], dtype=np.int64),
            "Metadata_n_crops_kept": np.array([r.n_kept for r in used], dtype=np.int64),
            "Metadata_otsu_threshold": np.array([r.otsu for r in used], dtype=np.float64),
        }
    )
    return pd.concat([keys, means.reset_index(drop=True)], axis=1)


def well_table(
    records: list[FieldRecord],
    embeddings: np.ndarray,
    owners: np.ndarray,
    aggregation: str,
    excluded: Counter[str],
) -> pd.DataFrame:
    """One row per well with at least one embedded field: the aggregate over all its kept crops."""
    crops = pd.DataFrame(embeddings.astype(np.float64), columns=feature_names(embeddings.shape[1]))
    wells = pd.Series([records[i].well for i in owners], name="Metadata_Well", dtype="string")
    profile = crops.groupby(wells).agg(aggregation)
    usable = Counter(r.well for r in records if r.usable)
    unusable = Counter(r.well for r in records if not r.usable)
    index = profile.index
    counts = pd.DataFrame(
        {
            "Metadata_Well": pd.array(index, dtype="string"),
            "Metadata_n_crops": wells.value_counts().reindex(index).to_numpy(np.int64),
            "Metadata_n_fields": np.array([usable[w] for w in index], dtype=np.int64),
            "Metadata_n_fields_excluded": np.array([excluded[w] for w in index], dtype=np.int64),
            "Metadata_n_fields_unusable": np.array([unusable[w] for w in index], dtype=np.int64),
        }
    )
    return pd.concat([counts, profile.reset_index(drop=True)], axis=1)
