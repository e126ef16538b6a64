"""Percent replicating and percent matching, as CPJUMP1 computes them.

Chandrasekaran et al. 2024 (Nat Methods; CPJUMP1's ``utils.py``:
``corr_between_replicates``, ``corr_between_non_replicates``,
``percent_score``): a group's statistic is the median Pearson correlation
between its members (CPJUMP1 takes the nanmedian of the correlation matrix
with its diagonal blanked; every pair appears twice there, which leaves the
median of the pairs unchanged). The null is the same statistic on groups of
as many members taken from different groups, and a group counts when its
median exceeds the null's 95th percentile. Percent replicating groups wells by
perturbation; percent matching groups perturbations' consensus profiles by
MoA or target.

Three choices differ from CPJUMP1, which has one replicate count for all
compounds. Each group size gets its own null: the median of more pairs
varies less, so one null would favour small or large groups. Null groups
have at most ``MAX_NULL_MEMBERS`` members and larger groups (controls
repeated on every plate, broad MoAs) are compared with that null: a null of
thousands of members would cost thousands of times more, and as a smaller
group's median varies more, its 95th percentile is a slightly higher (so
stricter) threshold. A null draw picks distinct groups first, then one
member of each; CPJUMP1 draws wells and rejects draws that repeat a compound.
For groups of equal size the two are the same, and picking groups keeps a
dominant group from stalling the draws.

The draws depend on the labels alone, so ``design`` runs once and ``score``
once per correction method. How they are drawn, for anyone who checks them:
groups in sorted order of their names, members in row order;
``rng = numpy.random.default_rng(seed)``; ``null_size`` times
``rng.choice(n_groups, width, replace=False)`` with ``width`` the largest
null a scored group needs (at most ``n_groups``); then
``rng.random((null_size, width))`` times each picked group's member count,
floored, chooses the member. A null of ``k`` members uses the first ``k``
picks of each draw (a shuffled sample's prefix is a uniform sample).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

# Values (pairs, or members x features) a block of groups holds at once.
BLOCK_VALUES = 1 << 24
# Rows up to which all pairwise correlations are computed at once (128 MB of float64).
GRAM_ROWS = 4096
# Null groups have at most this many members; larger groups are compared with this null.
MAX_NULL_MEMBERS = 25


@dataclass(frozen=True)
class GroupDesign:
    """Which rows each scored group holds and which rows each null draw takes: labels only."""

    names: list[str]
    members: list[np.ndarray]
    null: np.ndarray

    def scorable(self, size: int) -> bool:
        """A null for groups of ``size`` exists (as many other groups to draw from)."""
        return null_members(size) <= self.null.shape[1]


@dataclass(frozen=True)
class PercentScore:
    """A percent score, its thresholds, and each group's median correlation.

    ``thresholds``: the null's percentile per null group size (members).
    ``groups``: index the group's name; columns ``n`` (members), ``median``
    (median pairwise Pearson correlation), ``threshold`` and ``above``. A
    group whose null would need more groups than there are is not scored.
    ``n_profiles``: distinct profiles in the scored groups.
    """

    percent: float
    thresholds: dict[int, float]
    groups: pd.DataFrame
    n_profiles: int


def replicate_groups(labels: Sequence[str]) -> dict[str, np.ndarray]:
    """Rows per label, empty or missing labels left out."""
    series = pd.Series(labels, dtype="string").fillna("").str.strip()
    kept = series[series != ""]
    return {name: np.asarray(rows) for name, rows in kept.groupby(kept, sort=True).indices.items()}


def label_groups(labels: Sequence[str], separator: str) -> dict[str, np.ndarray]:
    """Rows per label where a row may hold several labels joined by ``separator``."""
    split = pd.Series(labels, dtype="string").fillna("").str.split(separator, regex=False).explode().str.strip()
    kept = split[split != ""]
    groups = kept.groupby(kept, sort=True).indices
    return {name: np.unique(kept.index.to_numpy()[rows]) for name, rows in groups.items()}


def design(groups: dict[str, np.ndarray], null_size: int, seed: int) -> GroupDesign:
    """Groups of two or more rows to score, and the null draws from all groups (see the module's notes)."""
    members = list(groups.values())
    scored = [name for name, rows in groups.items() if len(rows) >= 2]
    needed = max((null_members(len(groups[name])) for name in scored), default=0)
    width = min(needed, len(members))
    rng = np.random.default_rng(seed)
    picks = np.array([rng.choice(len(members), width, replace=False) for _ in range(null_size)], dtype=np.int64)
    picks = picks.reshape(null_size, width)
    counts = np.array([len(rows) for rows in members], dtype=np.int64)
    which = (rng.random((null_size, width)) * counts[picks]).astype(np.int64)
    flat = np.concatenate([*members, np.zeros(0, dtype=np.int64)])
    starts = np.cumsum(counts) - counts
    return GroupDesign(scored, [groups[name] for name in scored], flat[starts[picks] + which])


def null_members(size: int) -> int:
    """Members of the null groups a group of ``size`` is compared with (capped, see ``MAX_NULL_MEMBERS``)."""
    return min(size, MAX_NULL_MEMBERS)


def score(x: np.ndarray, plan: GroupDesign, percentile: float = 95) -> PercentScore:
    """The percent of scored groups whose median correlation exceeds their null's ``percentile``."""
    correlations = Correlations(x)
    sizes = sorted({null_members(len(rows)) for rows in plan.members if plan.scorable(len(rows))})
    thresholds = {
        size: float(np.nanpercentile(correlations.medians(plan.null[:, :size]), percentile)) for size in sizes
    }
    table = _group_medians(correlations, plan)
    table["threshold"] = table["n"].map(null_members).map(thresholds).astype(np.float64)
    table["above"] = (table["median"] > table["threshold"]).to_numpy()
    percent = 100 * float(table["above"].mean()) if len(table) else float("nan")
    scored = [rows for rows in plan.members if plan.scorable(len(rows))]
    return PercentScore(percent, thresholds, table, len(np.unique(np.concatenate([*scored, np.zeros(0, int)]))))


def percent_replicating(
    profiles: pd.DataFrame,
    replicate_key: str,
    features: list[str] | None = None,
    null_size: int = 10000,
    seed: int = 0,
    percentile: float = 95,
) -> PercentScore:
    """Percent of replicate groups (rows sharing ``replicate_key``, two or more) that correlate above the null.

    Every row with a non-empty key takes part (drop controls first where they
    should not count); ``features`` default to the non-``Metadata_`` columns.
    """
    groups = replicate_groups(profiles[replicate_key].to_numpy())
    return score(_values(profiles, features), design(groups, null_size, seed), percentile)


def percent_matching(
    profiles: pd.DataFrame,
    label_key: str,
    features: list[str] | None = None,
    separator: str = "|",
    null_size: int = 10000,
    seed: int = 0,
    percentile: float = 95,
) -> PercentScore:
    """Percent of labels (MoA, target) whose profiles, two or more, correlate above the null.

    ``profiles`` are consensus profiles, one per perturbation; a profile with
    several labels joined by ``separator`` belongs to each label's group.
    """
    groups = label_groups(profiles[label_key].to_numpy(), separator)
    return score(_values(profiles, features), design(groups, null_size, seed), percentile)


def _values(profiles: pd.DataFrame, features: list[str] | None) -> np.ndarray:
    columns = features if features is not None else [c for c in profiles.columns if not c.startswith("Metadata_")]
    return profiles[columns].to_numpy(np.float64)


class Correlations:
    """Pearson correlations between rows of ``x``, from their Gram matrix where it is small.

    Rows are centred and scaled to unit norm, so a dot product is their
    correlation (NaN for a flat row, as ``numpy.corrcoef`` gives). Up to
    ``GRAM_ROWS`` rows (consensus profiles) every pair is read from the Gram
    matrix; above (wells), each group's rows are gathered and multiplied.
    """

    def __init__(self, x: np.ndarray) -> None:
        centred = np.asarray(x, dtype=np.float64) - np.mean(x, axis=1, keepdims=True)
        norm = np.linalg.norm(centred, axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            self.z = centred / norm
        self.gram = self.z @ self.z.T if len(self.z) <= GRAM_ROWS else None
        self.median = np.nanmedian if np.isnan(self.z).any() else np.median

    def medians(self, rows: np.ndarray) -> np.ndarray:
        """Median pairwise correlation within each row of ``rows`` (groups of equal size), in blocks."""
        size = rows.shape[1]
        first, second = np.triu_indices(size, k=1)
        per_group = size * (size if self.gram is not None else max(size, self.z.shape[1]))
        block = max(1, BLOCK_VALUES // per_group)
        medians = [self._block(rows[start : start + block], first, second) for start in range(0, len(rows), block)]
        return np.concatenate([*medians, np.zeros(0)])

    def _block(self, rows: np.ndarray, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        if self.gram is not None:
            pairs = self.gram[rows[:, first], rows[:, second]]
        else:
            members = self.z[rows]
            pairs = np.matmul(members, np.swapaxes(members, 1, 2))[:, first, second]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN groups (flat rows) have a NaN median
            return self.median(pairs, axis=1)


def _group_medians(correlations: Correlations, plan: GroupDesign) -> pd.DataFrame:
    """Each scorable group's size and median correlation, groups of one size at a time."""
    frames = []
    for size in sorted({len(rows) for rows in plan.members if plan.scorable(len(rows))}):
        names = [name for name, rows in zip(plan.names, plan.members, strict=True) if len(rows) == size]
        rows = np.stack([rows for rows in plan.members if len(rows) == size])
        frames.append(pd.DataFrame({"n": size, "median": correlations.medians(rows)}, index=names))
    empty = pd.DataFrame({"n": pd.Series(dtype=np.int64), "median": pd.Series(dtype=np.float64)})
    table = pd.concat([empty, *frames])
    return table.loc[[name for name in plan.names if name in table.index]]
