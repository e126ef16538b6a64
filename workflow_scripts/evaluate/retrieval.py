"""KPIs of the biology a correction method keeps: retrieval, consensus, neighbours, cross-site and cross-batch agreement.

All KPIs use the treated wells (``Metadata_PertType`` is not ``negcon`` and
the replicate key is set); negative controls serve only as the reference of
``map_vs_negcon``. Similarities are cosine.

* ``map_vs_negcon`` / ``fraction_retrieved_vs_negcon``: copairs' phenotypic
  activity. Each treated well queries its replicates (same replicate key)
  against all negative-control wells; a perturbation's mAP is the mean AP of
  its wells, its p-value comes from copairs' permutation null (``null_size``,
  ``seed``), q from Benjamini-Hochberg; retrieved means q < ``fdr``. Value:
  the mean mAP over perturbations; fraction: the share retrieved.
* ``map_vs_nonrep`` / ``fraction_retrieved_vs_nonrep``: the same against the
  treated wells of other perturbations.
* ``map_moa_consensus`` / ``map_target_consensus``: consensus profiles
  (median of a perturbation's treated wells) query the other perturbations
  sharing a MoA (target) label against those sharing none; labels joined by
  ``label_separator`` count separately, as in copairs' multilabel mAP. Value:
  the mean over labels of the label's mAP. Profiles without a label take no
  part.
* ``nsb_*`` / ``nsbp_*``: see ``NeighbourTask``.
* ``cross_site_top1`` / ``cross_site_top5``: consensus per perturbation and
  ``Metadata_Source``; each one of a perturbation measured in two or more
  sources ranks every consensus profile of the other sources; hit when the
  same perturbation is among the k nearest.
* ``replicate_rank_stability``: per batch, each perturbation's mAP against
  that batch's negative controls; the Spearman correlation of the
  perturbations' mAPs between every two batches (perturbations in both, at
  least three), averaged over the pairs.
* ``percent_replicating`` / ``percent_matching_*``: ``replicating``, over
  treated wells and over consensus profiles.

The consensus table holds, per perturbation, its ``moa_key`` and
``target_key`` labels as ``Metadata_MoA`` and ``Metadata_Target`` (the first
non-empty value among its wells), its ``Metadata_PertType``, ``n_wells`` and
the median features.

Speed: all that depends on labels alone (ranked lists and their positives,
exclusion masks, null draws) is built once in ``BiologyEvaluator``'s
constructor and reused for every correction method. copairs' own
``average_precision`` builds every (query, negative) pair and sorts them (64
million pairs for 16,000 treated wells and 4,000 controls), and normalises
each AP in a Python loop; here AP comes from sorted blocks of the similarity
matrix, computed as copairs' ``ap_contiguous`` does it (same ranks, ties
resolved for the positive, float64 sums in rank order), and copairs'
``mean_average_precision`` turns APs into mAP, p and q. Its null
distributions are cached in a folder owned by the evaluator, so they are drawn
once per feature set. Similarities are float32, in blocks of ``BLOCK``
entries that ``threads`` workers rank side by side. 20,000 wells x 384
features take about 15 s per method on two cores.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from functools import partial
from itertools import combinations
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
from copairs.map import mean_average_precision
from scipy import sparse
from scipy.stats import spearmanr
from threadpoolctl import threadpool_limits

from workflow_scripts.evaluate import replicating
from workflow_scripts.evaluate.kpi import Kpi, NotComputable, catalogued, missing
from workflow_scripts.evaluate.labels import NEGCON, PERT_TYPE_KEY, text, treated

SOURCE_KEY = "Metadata_Source"
# Consensus table columns (the contract names them whatever the MoA and target keys are).
MOA_COLUMN, TARGET_COLUMN = "Metadata_MoA", "Metadata_Target"
# Similarity entries held at once (~16 MB float32, plus a float64 copy while ranking).
BLOCK = 1 << 22
# Above every key 1 - cosine can take (0..2): the key of a reference that is not a negative.
_NOT_NEGATIVE = 3.0
_MIN_SHARED_FOR_SPEARMAN = 3
TOP_K = (1, 5)
# The catalogue's biology KPIs this module computes (the MoA and target silhouettes come from ``batch``).
KPIS = (
    "map_vs_negcon", "fraction_retrieved_vs_negcon", "map_vs_nonrep", "fraction_retrieved_vs_nonrep",
    "map_moa_consensus", "map_target_consensus", "nsb_moa", "nsbp_moa", "nsb_target", "nsbp_target",
    "percent_replicating", "percent_matching_moa", "percent_matching_target",
    "cross_site_top1", "cross_site_top5", "replicate_rank_stability",
)  # fmt: skip
# The activity table's columns after the replicate key.
ACTIVITY_COLUMNS = ("reference", "n_replicates", "mean_average_precision", "p_value", "q_value", "significant")

log = logging.getLogger("workflow_scripts.evaluate")


@dataclass(frozen=True)
class BiologySettings:
    """The keys of the ``evaluation`` settings these KPIs read, with the schema's defaults."""

    replicate_key: str = "Metadata_Perturbation"
    moa_key: str = "Metadata_MoA"
    target_key: str = "Metadata_Target"
    batch_key: str = "Metadata_Batch"
    label_separator: str = "|"
    null_size: int = 10000
    fdr: float = 0.05
    seed: int = 0

    @classmethod
    def of(cls, settings: Mapping[str, Any]) -> BiologySettings:
        """The settings' values for these keys; others (gate, weights) are not ours."""
        names = {field.name for field in fields(cls)}
        return cls(**{key: value for key, value in settings.items() if key in names})


@dataclass(frozen=True)
class BiologyResult:
    """One method's biology KPIs, activity table and consensus profiles (without features / method columns)."""

    kpis: list[Kpi]
    activity: pd.DataFrame
    consensus: pd.DataFrame


# ---------------------------------------------------------------- labels


def membership(labels: Sequence[str], separator: str | None) -> tuple[sparse.csr_matrix, np.ndarray]:
    """(rows x labels) 0/1 matrix and the label names; with ``separator``, a row may hold several labels."""
    series = pd.Series(np.asarray(labels, dtype=object), dtype="string").fillna("")
    exploded = (series.str.split(separator, regex=False) if separator else series.map(lambda value: [value])).explode()
    exploded = exploded.str.strip()
    exploded = exploded[exploded != ""]
    names, codes = np.unique(exploded.to_numpy(dtype=str), return_inverse=True)
    matrix = sparse.csr_matrix(
        (np.ones(len(codes), dtype=np.float32), (exploded.index.to_numpy(), codes)), shape=(len(series), len(names))
    )
    matrix.data[:] = 1  # a label given twice counts once
    return matrix, names


def shares_label(a: sparse.csr_matrix, b: sparse.csr_matrix) -> sparse.csr_matrix:
    """(rows of a x rows of b): nonzero where the two rows share a label."""
    product = (a @ b.T).tocsr()
    product.eliminate_zeros()
    return product


# ---------------------------------------------------------------- average precision


@dataclass(frozen=True)
class RankingTask:
    """Ranked lists for average precision, fixed by the labels.

    A list is a (query row, label) pair: the query ranks the other rows with
    that label (its positives) against the reference rows that share no label
    with it (its negatives). ``excluded`` marks, per query, the references
    that are not negatives (same label, or the query itself). Positive pairs
    are sorted by query, so a block of queries owns a contiguous run of them.
    """

    queries: np.ndarray
    references: np.ndarray
    excluded: sparse.csr_matrix
    n_negatives: np.ndarray
    list_query: np.ndarray
    list_label: np.ndarray
    labels: np.ndarray
    pair_list: np.ndarray
    pair_query: np.ndarray
    pair_positive: np.ndarray

    @property
    def n_positives(self) -> np.ndarray:
        """Positives of each list."""
        return np.bincount(self.pair_list, minlength=len(self.list_query))

    @property
    def n_profiles(self) -> int:
        """Profiles that are queries, positives or references."""
        return len(np.union1d(self.queries, self.references))


def ranking_task(rows: np.ndarray, labels: sparse.csr_matrix, names: np.ndarray, references: np.ndarray) -> RankingTask:
    """Lists for every row of ``rows`` and each of its labels held by another row of ``rows``.

    ``labels`` is the (all rows x labels) membership; references that share
    a label with a query (or are the query) are not its negatives.
    """
    members = labels[rows].tocsc()
    parts = [
        _label_pairs(rows, members.indices[members.indptr[c] : members.indptr[c + 1]], c) for c in range(len(names))
    ]
    label, query_row, positive = (np.concatenate(column) for column in zip(*parts, _NO_PAIRS, strict=True))
    if len(label) == 0:
        raise NotComputable("no label held by two profiles")
    queries, pair_query = np.unique(query_row, return_inverse=True)
    list_keys, pair_list = np.unique(np.stack([pair_query, label]), axis=1, return_inverse=True)
    pair_list = pair_list.ravel()
    order = np.lexsort((pair_list, pair_query))
    excluded = shares_label(labels[queries], labels[references])
    n_negatives = len(references) - np.diff(excluded.indptr)
    if n_negatives.sum() == 0:
        raise NotComputable("no query has a negative")
    return RankingTask(
        queries, references, excluded, n_negatives, list_keys[0], list_keys[1], names,
        pair_list[order], pair_query[order], positive[order],
    )  # fmt: skip


_NO_PAIRS = (np.zeros(0, dtype=np.int64),) * 3


def _label_pairs(rows: np.ndarray, holders: np.ndarray, label: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(label, query row, positive row) for every ordered pair of distinct holders of ``label``."""
    first, second = np.meshgrid(holders, holders, indexing="ij")
    distinct = first != second
    query, positive = rows[first[distinct]], rows[second[distinct]]
    return np.full(len(query), label, dtype=np.int64), query, positive


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit norm, float32 (cosine similarity as a dot product; zero rows stay zero)."""
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(np.divide(x, norm, out=np.zeros_like(x, dtype=np.float64), where=norm > 0), np.float32)


def average_precision(task: RankingTask, unit: np.ndarray, threads: int = 1) -> np.ndarray:
    """AP of every list of ``task`` on the unit rows ``unit``, equal to copairs' ``average_precision``.

    Keys are copairs' float32 ``1 - similarity``; a positive ranks after the
    negatives with a strictly smaller key (ties go to the positive, as
    copairs' stable sort puts positives first); the AP is the float64 sum of
    precision at each positive, in rank order, over the positives.
    """
    keys = _positive_keys(task, unit)
    reference = unit[task.references]
    step = max(1, BLOCK // max(1, len(task.references)))
    bounds = np.searchsorted(task.pair_query, np.arange(0, len(task.queries) + step, step))

    def below(start: int) -> np.ndarray:
        pairs = slice(bounds[start // step], bounds[start // step + 1])
        return _negatives_below(task, unit, reference, start, step, keys[pairs], task.pair_query[pairs])

    order = np.lexsort((keys, task.pair_list))
    lists = task.pair_list[order]
    starts = np.searchsorted(lists, np.arange(len(task.list_query)))
    rank = np.arange(len(lists)) - starts[lists]
    precision = (rank + 1) / (rank + np.concatenate(blockwise(below, len(task.queries), step, threads))[order] + 1)
    return np.add.reduceat(precision, starts) / task.n_positives


def blockwise(function: Callable[[int], Any], n: int, step: int, threads: int) -> list[Any]:
    """``function(start)`` for each block of ``step`` of ``n`` rows, in order, on ``threads`` workers.

    BLAS runs one thread per worker meanwhile: the sorts and masks between the
    products are single-threaded, so blocks side by side keep every core busy.
    """
    starts = range(0, n, step)
    if threads <= 1:
        return [function(start) for start in starts]
    with threadpool_limits(1), ThreadPoolExecutor(threads) as pool:
        return list(pool.map(function, starts))


def _positive_keys(task: RankingTask, unit: np.ndarray) -> np.ndarray:
    query = task.queries[task.pair_query]
    step = max(1, BLOCK // unit.shape[1])
    sims = [
        np.einsum("ij,ij->i", unit[query[i : i + step]], unit[task.pair_positive[i : i + step]])
        for i in range(0, len(query), step)
    ]
    return np.float32(1) - np.concatenate(sims)


def _negatives_below(
    task: RankingTask,
    unit: np.ndarray,
    reference: np.ndarray,
    start: int,
    step: int,
    keys: np.ndarray,
    query: np.ndarray,
) -> np.ndarray:
    """For positive pairs of queries ``start:start + step``: how many negatives have a smaller key.

    Each query's row of keys is sorted; rows are laid end to end with an
    offset of 4 per row (keys lie in 0..3, multiples of 2^-24, exact in
    float64), so one ``searchsorted`` answers every pair of the block.
    """
    block = np.float32(1) - unit[task.queries[start : start + step]] @ reference.T
    excluded = task.excluded[start : start + step].nonzero()
    block[excluded] = _NOT_NEGATIVE
    block.sort(axis=1)
    offset = 4.0 * np.arange(len(block))[:, None]
    flat = (block + offset).ravel()
    local = query - start
    return np.searchsorted(flat, keys + 4.0 * local) - local * block.shape[1]


def copairs_map(task: RankingTask, ap: np.ndarray, key: str, settings: BiologySettings, cache: Path, threads: int):
    """copairs' per-label mAP, permutation p-value and BH q-value from the lists' APs.

    ``normalized_average_precision`` is a column copairs averages; its
    per-row computation is a Python loop over harmonic numbers (minutes for
    large lists) and no KPI reads it, so it is left NaN.
    """
    n_positives = task.n_positives
    scores = pd.DataFrame(
        {
            key: task.labels[task.list_label],
            "average_precision": ap,
            "normalized_average_precision": np.nan,
            "n_pos_pairs": n_positives,
            "n_total_pairs": n_positives + task.n_negatives[task.list_query],
        }
    )
    cache.mkdir(parents=True, exist_ok=True)
    return mean_average_precision(
        scores, [key], settings.null_size, settings.fdr, settings.seed,
        progress_bar=False, max_workers=threads, cache_dir=cache,
    )  # fmt: skip


def label_map(task: RankingTask, ap: np.ndarray) -> pd.Series:
    """Mean AP per label (copairs' ``mean_average_precision`` column), indexed by label name."""
    sums = np.bincount(task.list_label, weights=ap, minlength=len(task.labels))
    counts = np.bincount(task.list_label, minlength=len(task.labels))
    held = counts > 0
    return pd.Series(sums[held] / counts[held], index=task.labels[held])


# ---------------------------------------------------------------- wells and consensus


@dataclass(frozen=True)
class Wells:
    """Per-well labels the KPIs read: the replicate key, which wells are treated or controls, batches, sources."""

    key: np.ndarray
    treated: np.ndarray
    negcon: np.ndarray
    batch: np.ndarray | None
    source: np.ndarray | None
    moa: np.ndarray | None
    target: np.ndarray | None
    pert_type: np.ndarray

    @classmethod
    def of(cls, meta: pd.DataFrame, settings: BiologySettings) -> Wells:
        """The labels of ``meta``; without the replicate key column no well is treated."""
        meta = meta.reset_index(drop=True)
        key = text(meta, settings.replicate_key)
        key = key if key is not None else np.full(len(meta), "", dtype=object)
        pert_type = text(meta, PERT_TYPE_KEY)
        pert_type = pert_type if pert_type is not None else np.full(len(meta), "", dtype=object)
        return cls(
            key, treated(meta, settings.replicate_key), pert_type == NEGCON, text(meta, settings.batch_key), text(meta, SOURCE_KEY),
            text(meta, settings.moa_key), text(meta, settings.target_key), pert_type,
        )  # fmt: skip


@dataclass(frozen=True)
class Consensus:
    """Which treated wells make each perturbation's consensus profile, and its labels."""

    rows: np.ndarray
    codes: np.ndarray
    table: pd.DataFrame

    @classmethod
    def of(cls, wells: Wells, key: str) -> Consensus:
        """One consensus per replicate key value among treated wells, in sorted order."""
        rows = np.flatnonzero(wells.treated)
        names, codes = np.unique(wells.key[rows].astype(str), return_inverse=True)
        columns = {MOA_COLUMN: wells.moa, TARGET_COLUMN: wells.target, PERT_TYPE_KEY: wells.pert_type}
        table = pd.DataFrame({key: names})
        for column, values in columns.items():
            table[column] = _first_set(values[rows] if values is not None else None, codes, len(names))
        table["n_wells"] = np.bincount(codes, minlength=len(names))
        return cls(rows, codes, table)

    def values(self, x: np.ndarray) -> np.ndarray:
        """The median of each perturbation's treated wells."""
        return group_medians(x[self.rows], self.codes)

    def frame(self, values: np.ndarray, feature_names: Sequence[str]) -> pd.DataFrame:
        """The consensus table: labels, well counts, then the features."""
        return pd.concat([self.table, pd.DataFrame(values, columns=list(feature_names))], axis=1)


def _first_set(values: np.ndarray | None, codes: np.ndarray, n: int) -> pd.Series:
    """Per group, the first non-empty value (NA where none)."""
    result = pd.Series(pd.NA, index=range(n), dtype="string")
    if values is None:
        return result
    frame = pd.DataFrame({"code": codes, "value": values})
    frame = frame[frame["value"] != ""].drop_duplicates("code")
    result.iloc[frame["code"].to_numpy()] = frame["value"].to_numpy()
    return result


def group_medians(x: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Per code 0..max, the median of its rows."""
    return pd.DataFrame(x).groupby(codes, sort=True).median().to_numpy(np.float64)


# ---------------------------------------------------------------- KPI plans


class Plan(Protocol):
    """The label-only part of some KPIs, built once; called per method with the wells and consensus profiles."""

    def __call__(self, x: np.ndarray, consensus: np.ndarray) -> list[Kpi]: ...


@dataclass(frozen=True)
class Missing:
    """KPIs that no method can compute here, with the reason."""

    rows: list[Kpi]

    def __call__(self, x: np.ndarray, consensus: np.ndarray) -> list[Kpi]:
        return self.rows


def planned(build: Callable[[], Any], names: Sequence[str], n_profiles: int) -> Any:
    """``build()``, or the missing rows of ``names`` where it says why it cannot be."""
    try:
        return build()
    except NotComputable as why:
        return Missing([missing(name, n_profiles, str(why)) for name in names])


@dataclass(frozen=True)
class ReplicateRetrieval:
    """``map_vs_*`` and ``fraction_retrieved_vs_*`` against one reference, with the activity rows."""

    reference: str
    task: RankingTask
    settings: BiologySettings
    cache: Path
    threads: int

    def run(self, x: np.ndarray) -> tuple[list[Kpi], pd.DataFrame]:
        """The two KPIs and the activity table (one row per perturbation)."""
        key = self.settings.replicate_key
        ap = average_precision(self.task, unit_rows(x), self.threads)
        scores = copairs_map(self.task, ap, key, self.settings, self.cache, self.threads)
        wells = np.bincount(self.task.list_label, minlength=len(self.task.labels))
        activity = pd.DataFrame(
            {
                key: scores[key].to_numpy(),
                "reference": self.reference,
                "n_replicates": wells[np.searchsorted(self.task.labels, scores[key].to_numpy())],
                "mean_average_precision": scores["mean_average_precision"].to_numpy(),
                "p_value": scores["p_value"].to_numpy(),
                "q_value": scores["corrected_p_value"].to_numpy(),
                "significant": (scores["corrected_p_value"] < self.settings.fdr).to_numpy(),
            }
        )
        n = self.task.n_profiles
        kpis = [
            catalogued(f"map_vs_{self.reference}", float(activity["mean_average_precision"].mean()), n),
            catalogued(f"fraction_retrieved_vs_{self.reference}", float(activity["significant"].mean()), n),
        ]
        return kpis, activity


def replicate_retrieval(wells: Wells, reference: str, settings: BiologySettings, cache: Path, threads: int):
    """Treated wells query their replicates against the controls (negcon) or other perturbations (nonrep)."""
    labels, names = membership(np.where(wells.treated, wells.key, ""), None)
    if not (np.diff(labels.tocsc().indptr) >= 2).any():
        raise NotComputable(f"no {settings.replicate_key} with two or more treated wells")
    if reference == NEGCON and not wells.negcon.any():
        raise NotComputable(f"no negative-control wells ({PERT_TYPE_KEY} == '{NEGCON}')")
    if reference != NEGCON and len(names) < 2:
        raise NotComputable(f"a single {settings.replicate_key} among treated wells")
    references = np.flatnonzero(wells.negcon if reference == NEGCON else wells.treated)
    task = ranking_task(np.flatnonzero(wells.treated), labels, names, references)
    return ReplicateRetrieval(reference, task, settings, cache / reference, threads)


@dataclass(frozen=True)
class ConsensusRetrieval:
    """``map_{moa,target}_consensus``: consensus profiles retrieve perturbations sharing a label."""

    kpi: str
    task: RankingTask

    def __call__(self, x: np.ndarray, consensus: np.ndarray) -> list[Kpi]:
        ap = average_precision(self.task, unit_rows(consensus))
        return [catalogued(self.kpi, float(label_map(self.task, ap).mean()), self.task.n_profiles)]


def consensus_retrieval(kpi: str, labels: np.ndarray | None, key: str, settings: BiologySettings) -> Plan:
    """The ranking task of the consensus profiles by their ``key`` labels (None: no such column)."""
    matrix, names = membership(require_labels(labels, key), settings.label_separator)
    if not (np.diff(matrix.tocsc().indptr) >= 2).any():
        raise NotComputable(f"no {key} label shared by two perturbations")
    rows = np.flatnonzero(np.diff(matrix.indptr) > 0)
    try:
        return ConsensusRetrieval(kpi, ranking_task(rows, matrix, names, rows))
    except NotComputable:
        raise NotComputable(f"every labelled perturbation shares a {key} label with every other") from None


def require_labels(labels: np.ndarray | None, key: str) -> np.ndarray:
    """The labels as strings ("" where missing); not computable without the column or any label."""
    if labels is None:
        raise NotComputable(f"no {key} column")
    values = pd.Series(labels, dtype="string").fillna("").str.strip().to_numpy(dtype=object)
    if not (values != "").any():
        raise NotComputable(f"no {key} labels on treated wells")
    return values


@dataclass(frozen=True)
class PercentPlan:
    """``percent_replicating`` over treated wells, or ``percent_matching_*`` over consensus profiles.

    The note counts the groups left out because there are fewer other groups
    than their null needs.
    """

    kpi: str
    rows: np.ndarray | None
    plan: replicating.GroupDesign

    def __call__(self, x: np.ndarray, consensus: np.ndarray) -> list[Kpi]:
        result = replicating.score(consensus if self.rows is None else x[self.rows], self.plan)
        unscored = len(self.plan.members) - len(result.groups)
        note = f"{unscored} of {len(self.plan.members)} groups not scored (too few other groups)" if unscored else ""
        return [catalogued(self.kpi, result.percent, result.n_profiles, note)]


def percent_matching(kpi: str, labels: np.ndarray | None, key: str, settings: BiologySettings) -> Plan:
    """Groups of consensus profiles sharing a ``key`` label, and their null draws."""
    groups = replicating.label_groups(require_labels(labels, key), settings.label_separator)
    plan = replicating.design(groups, settings.null_size, settings.seed)
    if not any(plan.scorable(len(rows)) for rows in plan.members):
        raise NotComputable(f"no {key} label shared by two perturbations and enough other labels to draw its null")
    return PercentPlan(kpi, None, plan)


def percent_replicating(wells: Wells, settings: BiologySettings) -> Plan:
    """Replicate groups of treated wells, and their null draws."""
    rows = np.flatnonzero(wells.treated)
    plan = replicating.design(replicating.replicate_groups(wells.key[rows]), settings.null_size, settings.seed)
    if not any(plan.scorable(len(group)) for group in plan.members):
        why = f"no {settings.replicate_key} with two treated wells and enough other values to draw its null"
        raise NotComputable(why)
    return PercentPlan("percent_replicating", rows, plan)


@dataclass(frozen=True)
class LabelKind:
    """One kind of label (MoA or target) of ``NeighbourTask``: its KPIs, membership and NSB exclusions."""

    kpis: tuple[str, str]
    labels: sparse.csr_matrix
    not_same_batch: sparse.csr_matrix


@dataclass(frozen=True)
class NeighbourTask:
    """``nsb_*`` / ``nsbp_*``: nearest-neighbour label accuracy, as Kim et al. 2025 (CellPaintSSL) compute it.

    Their ``evaluate.py`` and ``source/eval.py`` (``nearest_neighbor_classifier_NSBW``):
    well-level profiles without controls, each feature standardised over those
    wells (``StandardScaler``), cosine 1-NN; a well's prediction is its nearest
    neighbour's label. NSB ("not same batch") leaves out the well itself and
    the wells of its batch that share its label, so a neighbour with its label
    must come from another batch, while same-batch wells of other labels stay
    and cost accuracy where batch effects pull them close. NSBP ("not same
    batch or perturbation") also leaves out every well of the same
    perturbation (their code's "well", which is the perturbation in their
    fixed-layout JUMP plates), so the MoA or target must be recognised in other
    compounds. Kim et al. report NSB for perturbations and NSBP for targets;
    the catalogue asks both for MoA and target labels. Multi-valued labels: a
    neighbour is right, and a same-batch well is left out, where they share any
    label. Wells without a label take no part. Kinds of label held by the same
    wells share one similarity matrix.
    """

    rows: np.ndarray
    not_same_perturbation: sparse.csr_matrix
    kinds: list[LabelKind]
    threads: int

    def __call__(self, x: np.ndarray, consensus: np.ndarray) -> list[Kpi]:
        z = unit_rows(_standardized(x[self.rows]))
        step = max(1, BLOCK // len(z))
        hits = sum(blockwise(partial(self._hits, z, step), len(z), step, self.threads))
        return [
            _accuracy(name, right, counted)
            for kind, kind_hits in zip(self.kinds, hits, strict=True)
            for name, (right, counted) in zip(kind.kpis, kind_hits, strict=True)
        ]

    def _hits(self, z: np.ndarray, step: int, start: int) -> np.ndarray:
        """kind x (NSB, NSBP) x (right, counted) over the wells ``start:start + step``."""
        sims = z[start : start + step] @ z.T
        hits = np.zeros((len(self.kinds), 2, 2), dtype=np.int64)
        for number, kind in enumerate(self.kinds):
            block = sims.copy() if number < len(self.kinds) - 1 else sims
            for mode, left_out in enumerate((kind.not_same_batch, self.not_same_perturbation)):
                block[left_out[start : start + len(block)].nonzero()] = -np.inf
                hits[number, mode] = _right(kind.labels, block, start)
        return hits


def _right(labels: sparse.csr_matrix, block: np.ndarray, start: int) -> np.ndarray:
    """(right, counted) over the block's wells that have a neighbour left: it shares a label."""
    nearest = block.argmax(axis=1)
    counted = np.isfinite(block[np.arange(len(block)), nearest])
    shared = labels[start : start + len(block)].multiply(labels[nearest]).sum(axis=1)
    right = np.asarray(shared).ravel() > 0
    return np.array([(right & counted).sum(), counted.sum()])


def _accuracy(kpi: str, right: int, counted: int) -> Kpi:
    if counted == 0:
        return missing(kpi, 0, "no well has a neighbour left")
    return catalogued(kpi, float(right / counted), int(counted))


def neighbour_plans(wells: Wells, settings: BiologySettings, threads: int) -> list[Plan]:
    """NSB / NSBP of MoA and target: one task per set of labelled wells, or the missing rows."""
    plans: list[Plan] = []
    kinds: dict[bytes, tuple[np.ndarray, list[LabelKind]]] = {}
    for name, key, labels in (("moa", settings.moa_key, wells.moa), ("target", settings.target_key, wells.target)):
        kpis = (f"nsb_{name}", f"nsbp_{name}")
        try:
            rows, kind = label_kind(kpis, wells, labels, key, settings)
        except NotComputable as why:
            plans.append(Missing([missing(kpi, int(wells.treated.sum()), str(why)) for kpi in kpis]))
            continue
        kinds.setdefault(rows.tobytes(), (rows, []))[1].append(kind)
    for rows, same_rows in kinds.values():
        perturbation, _ = membership(wells.key[rows], None)
        plans.append(NeighbourTask(rows, shares_label(perturbation, perturbation), same_rows, threads))
    return plans


def label_kind(
    kpis: tuple[str, str], wells: Wells, labels: np.ndarray | None, key: str, settings: BiologySettings
) -> tuple[np.ndarray, LabelKind]:
    """The treated wells labelled by ``key``, and what NSB leaves out among them."""
    if wells.batch is None:
        raise NotComputable(f"no {settings.batch_key} column")
    values = require_labels(np.where(wells.treated, labels, "") if labels is not None else None, key)
    matrix, _ = membership(values, settings.label_separator)
    rows = np.flatnonzero(np.diff(matrix.indptr) > 0)
    batch = wells.batch[rows]
    if len(np.unique(batch)) < 2:
        raise NotComputable(f"a single {settings.batch_key} among treated wells with a {key} label")
    matrix = matrix[rows]
    shared = shares_label(matrix, matrix).tocoo()
    same_batch = batch[shared.row] == batch[shared.col]
    not_same_batch = _pairs(shared.row[same_batch], shared.col[same_batch], len(rows))
    return rows, LabelKind(kpis, matrix, not_same_batch)


def _pairs(row: np.ndarray, col: np.ndarray, n: int) -> sparse.csr_matrix:
    return sparse.csr_matrix((np.ones(len(row), dtype=np.float32), (row, col)), shape=(n, n))


def _standardized(x: np.ndarray) -> np.ndarray:
    """Each feature centred and scaled to unit variance over the rows (constant features only centred)."""
    std = x.std(axis=0)
    return (x - x.mean(axis=0)) / np.where(std > 0, std, 1)


@dataclass(frozen=True)
class CrossSite:
    """``cross_site_top{1,5}`` over consensus profiles per (perturbation, source).

    A query's rank is the number of other-source profiles more similar than
    its best match (the same perturbation in another source); top-k is rank <
    k, so ties count for the query.
    """

    rows: np.ndarray
    codes: np.ndarray
    perturbation: np.ndarray
    source: np.ndarray
    queries: np.ndarray

    def __call__(self, x: np.ndarray, consensus: np.ndarray) -> list[Kpi]:
        unit = unit_rows(group_medians(x[self.rows], self.codes))
        sims = unit[self.queries] @ unit.T
        sims[self.source[self.queries][:, None] == self.source[None, :]] = -np.inf
        match = self.perturbation[self.queries][:, None] == self.perturbation[None, :]
        best = np.where(match, sims, -np.inf).max(axis=1)
        rank = (sims > best[:, None]).sum(axis=1)
        return [catalogued(f"cross_site_top{k}", float((rank < k).mean()), len(self.source)) for k in TOP_K]


def cross_site(wells: Wells) -> Plan:
    """Consensus groups per (perturbation, source); queries: perturbations measured in two or more sources."""
    if wells.source is None:
        raise NotComputable(f"no {SOURCE_KEY} column")
    rows = np.flatnonzero(wells.treated & (wells.source != ""))
    pairs = np.stack([wells.key[rows].astype(str), wells.source[rows].astype(str)], axis=1)
    groups, codes = np.unique(pairs, axis=0, return_inverse=True)
    if len(np.unique(groups[:, 1])) < 2:
        raise NotComputable(f"a single {SOURCE_KEY}")
    perturbation = np.unique(groups[:, 0], return_inverse=True)[1]
    source = np.unique(groups[:, 1], return_inverse=True)[1]
    queries = np.flatnonzero(np.bincount(perturbation)[perturbation] >= 2)
    if len(queries) == 0:
        raise NotComputable(f"no perturbation measured in two {SOURCE_KEY} values")
    return CrossSite(rows, codes.ravel(), perturbation, source, queries)


@dataclass(frozen=True)
class RankStability:
    """``replicate_rank_stability``: per-batch mAP against that batch's controls, Spearman between batches."""

    tasks: dict[str, RankingTask]

    def __call__(self, x: np.ndarray, consensus: np.ndarray) -> list[Kpi]:
        unit = unit_rows(x)
        maps = {batch: label_map(task, average_precision(task, unit)) for batch, task in self.tasks.items()}
        rhos = [_spearman(maps[a], maps[b]) for a, b in combinations(maps, 2)]
        rhos = [rho for rho in rhos if np.isfinite(rho)]
        n = len(np.unique(np.concatenate([np.union1d(t.queries, t.references) for t in self.tasks.values()])))
        if not rhos:
            why = f"no two batches share {_MIN_SHARED_FOR_SPEARMAN} perturbations whose mAPs vary"
            return [missing("replicate_rank_stability", n, why)]
        return [catalogued("replicate_rank_stability", float(np.mean(rhos)), n)]


def _spearman(a: pd.Series, b: pd.Series) -> float:
    shared = a.index.intersection(b.index)
    if len(shared) < _MIN_SHARED_FOR_SPEARMAN or a[shared].nunique() < 2 or b[shared].nunique() < 2:
        return float("nan")
    return float(spearmanr(a[shared], b[shared]).statistic)


def rank_stability(wells: Wells, settings: BiologySettings) -> Plan:
    """A ranking task against the controls for each batch that has controls and a replicated perturbation."""
    if wells.batch is None:
        raise NotComputable(f"no {settings.batch_key} column")
    batches = np.unique(wells.batch[wells.treated])
    if len(batches) < 2:
        raise NotComputable(f"a single {settings.batch_key}")
    labels, names = membership(np.where(wells.treated, wells.key, ""), None)
    tasks = {}
    for batch in batches:
        here = wells.batch == batch
        treated, controls = np.flatnonzero(wells.treated & here), np.flatnonzero(wells.negcon & here)
        if len(controls) and (np.diff(labels[treated].tocsc().indptr) >= 2).any():
            tasks[batch] = ranking_task(treated, labels, names, controls)
    if len(tasks) < 2:
        raise NotComputable(f"fewer than two {settings.batch_key} values with negative controls and replicates")
    return RankStability(tasks)


# ---------------------------------------------------------------- the evaluator


class BiologyEvaluator:
    """Biology KPIs of one feature set's profiles, for each correction method in turn.

    ``meta``: the wells' metadata (the same rows for every method);
    ``settings``: the ``evaluation`` section; ``threads``: workers for the
    similarity blocks (BLAS then runs one thread each) and copairs' p-values.
    The constructor builds every label-only structure; ``evaluate`` takes one
    method's (wells x features) matrix.
    """

    def __init__(self, meta: pd.DataFrame, settings: Mapping[str, Any], threads: int) -> None:
        self.settings = s = BiologySettings.of(settings)
        self.seconds: dict[str, float] = {}  # per KPI group, summed over the methods evaluated
        self._nulls = tempfile.TemporaryDirectory(prefix="copairs-nulls-")
        wells = Wells.of(meta, s)
        self.consensus = Consensus.of(wells, s.replicate_key)
        self.retrieval: list[ReplicateRetrieval | Missing] = []
        self.plans: dict[str, Plan] = {}
        if s.replicate_key not in meta.columns or not wells.treated.any():
            why = f"no {s.replicate_key} column" if s.replicate_key not in meta.columns else "no treated wells"
            self.plans["all"] = Missing([missing(kpi, 0, why) for kpi in KPIS])
            return
        self._plan(wells, s, Path(self._nulls.name), threads)

    def _plan(self, wells: Wells, s: BiologySettings, cache: Path, threads: int) -> None:
        """Every KPI's label-only part, or its missing rows."""
        n_treated, n_consensus = int(wells.treated.sum()), len(self.consensus.table)
        self.retrieval = [
            planned(partial(replicate_retrieval, wells, reference, s, cache, threads), names, n_treated)
            for reference, names in (
                (NEGCON, ("map_vs_negcon", "fraction_retrieved_vs_negcon")),
                ("nonrep", ("map_vs_nonrep", "fraction_retrieved_vs_nonrep")),
            )
        ]
        for name, key, column, values in (
            ("moa", s.moa_key, MOA_COLUMN, wells.moa),
            ("target", s.target_key, TARGET_COLUMN, wells.target),
        ):
            labels = self.consensus.table[column].to_numpy(dtype=object) if values is not None else None
            for kpi, build in (
                (f"map_{name}_consensus", consensus_retrieval),
                (f"percent_matching_{name}", percent_matching),
            ):
                self.plans[kpi] = planned(partial(build, kpi, labels, key, s), [kpi], n_consensus)
        for number, plan in enumerate(neighbour_plans(wells, s, threads)):
            self.plans[f"nsb / nsbp ({number})"] = plan
        self.plans["cross_site"] = planned(
            partial(cross_site, wells), ["cross_site_top1", "cross_site_top5"], n_treated
        )
        self.plans["rank_stability"] = planned(
            partial(rank_stability, wells, s), ["replicate_rank_stability"], n_treated
        )
        self.plans["percent_replicating"] = planned(
            partial(percent_replicating, wells, s), ["percent_replicating"], n_treated
        )

    def evaluate(self, x: np.ndarray, feature_names: Sequence[str] | None = None) -> BiologyResult:
        """All biology KPIs of one method's profiles ``x`` (rows as in ``meta``).

        ``feature_names`` name the consensus table's feature columns
        (``feature_0``, ... where not given).
        """
        x = np.asarray(x, dtype=np.float64)
        names = list(feature_names) if feature_names is not None else [f"feature_{i}" for i in range(x.shape[1])]
        consensus = _timed(self.seconds, "consensus profiles", self.consensus.values, x)
        kpis, activity = [], []
        for plan in self.retrieval:
            if isinstance(plan, Missing):
                kpis += plan.rows
                continue
            rows, table = _timed(self.seconds, f"replicate retrieval vs {plan.reference}", plan.run, x)
            kpis += rows
            activity.append(table)
        for name, plan in self.plans.items():
            kpis += _timed(self.seconds, name, plan, x, consensus)
        return BiologyResult(kpis, self._activity(activity), self.consensus.frame(consensus, names))

    def _activity(self, tables: list[pd.DataFrame]) -> pd.DataFrame:
        columns = [self.settings.replicate_key, *ACTIVITY_COLUMNS]
        return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=columns)


def _timed(seconds: dict[str, float], what: str, function: Callable[..., Any], *args: Any) -> Any:
    """``function(*args)``, its duration added to ``seconds[what]`` and logged (debug): where the time goes."""
    started = time.perf_counter()
    result = function(*args)
    elapsed = time.perf_counter() - started
    seconds[what] = seconds.get(what, 0.0) + elapsed
    log.debug("%s: %.2f s", what, elapsed)
    return result
