"""KPIs of the batch signal a correction method leaves in the profiles.

Five numbers per method, all over the treated wells (``Metadata_PertType`` is
not ``negcon`` and the replicate key is set): negative controls are the
anchors most corrections normalise to, so including them would reward a
method for how it treats its own reference rather than the perturbations.

* ``silhouette_plate`` / ``silhouette_batch``: cosine silhouette of the plate
  and batch labels (lower: plates and batches overlap).
* ``ilisi_batch``: scaled iLISI of the batch labels on the cosine kNN graph
  (higher: neighbourhoods mix batches).
* ``graph_connectivity``: whether each perturbation's replicate wells form one
  connected piece of the kNN graph (higher).
* ``batch_classifier_accuracy``: how well a logistic regression predicts the
  batch of perturbations it never saw (lower), as in Sypetkowski et al. 2023
  (RxRx1).

Everything that depends only on the labels (rows, label codes, folds) is
prepared once per feature set, because the same metadata is evaluated for
every correction method.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from scipy import sparse
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold
from sklearn.neighbors import NearestNeighbors
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler, normalize
from threadpoolctl import threadpool_limits

from workflow_scripts.evaluate.kpi import Kpi, catalogued, missing
from workflow_scripts.evaluate.labels import text, treated

if TYPE_CHECKING:
    from scib_metrics.nearest_neighbors import NeighborsResults

PLATE_KEY = "Metadata_Plate"
KPIS = ("silhouette_plate", "silhouette_batch", "ilisi_batch", "graph_connectivity", "batch_classifier_accuracy")
# Elements of the (rows x labels) similarity block the silhouette holds at once (32 MiB of float64).
_SILHOUETTE_BLOCK = 1 << 22
_CLASSIFIER_MAX_ITER = 1000


def cosine_silhouette(x: np.ndarray, labels: np.ndarray) -> float:
    """Mean silhouette of ``labels`` under cosine distance, equal to
    ``sklearn.metrics.silhouette_score(x, labels, metric="cosine")``.

    With unit rows u_i and S_C the sum of the unit rows of cluster C, the mean
    distance from i to C is ``1 - u_i·S_C/|C|`` (its own cluster leaves i out),
    so the score costs O(n·k·d) for k labels instead of the O(n²·d) of the
    pairwise matrix; 20,000 profiles take seconds. Singleton clusters score 0,
    as in scikit-learn.

    Raises ``ValueError`` where scikit-learn would (fewer than 2 or more than
    n - 1 labels, non-finite values) and where a profile is a zero vector:
    its cosine distance is undefined (scikit-learn would silently treat it as
    distance 1 to everything).
    """
    x = np.asarray(x, dtype=np.float64)
    codes, counts = _label_codes(labels)
    n, k = len(codes), len(counts)
    if len(x) != n:
        raise ValueError(f"{len(x)} profiles but {n} labels")
    if not 2 <= k <= n - 1:
        raise ValueError(f"the silhouette needs 2 to n - 1 labels; got {k} labels for {n} profiles")
    unit = _unit_rows(x)
    sums = _group_sums(unit, codes, k)
    step = max(1, _SILHOUETTE_BLOCK // k)
    scores = [_silhouette_rows(unit[i : i + step], codes[i : i + step], sums, counts) for i in range(0, n, step)]
    return float(np.concatenate(scores).mean())


def _label_codes(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes 0..k-1 of ``labels`` and the size of each label."""
    _, codes, counts = np.unique(np.asarray(labels), return_inverse=True, return_counts=True)
    return codes.ravel(), counts


def _unit_rows(x: np.ndarray) -> np.ndarray:
    """``x`` with every row scaled to length 1; refuses what cosine cannot measure."""
    problem = _profile_problem(x, cosine=True)
    if problem:
        raise ValueError(problem)
    return x / np.linalg.norm(x, axis=1)[:, None]


def _group_sums(unit: np.ndarray, codes: np.ndarray, k: int) -> np.ndarray:
    """(k, d) sums of the rows of each label."""
    n = len(codes)
    onehot = sparse.csr_matrix((np.ones(n), (codes, np.arange(n))), shape=(k, n))
    return np.asarray(onehot @ unit)


def _silhouette_rows(unit: np.ndarray, codes: np.ndarray, sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Silhouette of each of these rows given every label's sum of unit rows."""
    similarity = unit @ sums.T
    rows = np.arange(len(codes))
    own = counts[codes].astype(np.float64)
    self_similarity = np.einsum("ij,ij->i", unit, unit)
    with np.errstate(divide="ignore", invalid="ignore"):
        within = (own - 1 - (similarity[rows, codes] - self_similarity)) / (own - 1)
        between = 1.0 - similarity / counts
        between[rows, codes] = np.inf
        nearest = between.min(axis=1)
        score = np.nan_to_num((nearest - within) / np.maximum(within, nearest))
    return np.where(own > 1, score, 0.0)


@dataclass(frozen=True)
class _Plan:
    """The rows one KPI uses, their label codes and note, or why it cannot be computed."""

    rows: np.ndarray
    codes: np.ndarray
    why: str = ""
    note: str = ""
    folds: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.rows)


class BatchEvaluator:
    """The batch KPIs of one feature set, prepared once from its metadata.

    ``metadata`` holds the ``Metadata_*`` columns, one row per well, in the row
    order of every feature matrix later passed to :meth:`evaluate`.
    ``settings`` is the ``evaluation`` config section; this reads
    ``replicate_key``, ``batch_key``, ``moa_key``, ``target_key``,
    ``neighbors``, ``classifier_folds`` and ``seed``. ``threads`` caps the BLAS/OpenMP threads, the kNN search and the
    classifier folds run at once.

    The kNN graph (``ilisi_batch``, ``graph_connectivity``) links each treated
    well to its ``neighbors`` nearest other treated wells by cosine distance
    (euclidean on L2-normalised rows, exact search) and, as
    ``scib_metrics.nearest_neighbors.NeighborsResults`` expects, lists the
    well itself first at distance 0; LISI masks that self edge out.
    """

    def __init__(self, metadata: pd.DataFrame, settings: dict, threads: int) -> None:
        self.n_wells = len(metadata)
        self.seconds: dict[str, float] = {}  # per KPI, summed over the methods evaluated: where the time goes
        self.threads = threads
        self.neighbors = int(settings["neighbors"])
        self.seed = int(settings["seed"])
        batch_key, replicate_key = settings["batch_key"], settings["replicate_key"]
        treated, why = _treated_wells(metadata, replicate_key)
        batches = _label_plan(metadata, treated, why, batch_key, "batch")
        self._plans = {
            "silhouette_plate": _label_plan(metadata, treated, why, PLATE_KEY, "plate"),
            "silhouette_batch": batches,
            "ilisi_batch": self._knn_plan(batches),
            "graph_connectivity": self._knn_plan(_replicate_plan(metadata, treated, why, replicate_key)),
            "batch_classifier_accuracy": _classifier_plan(
                metadata, batches, replicate_key, int(settings["classifier_folds"]), self.seed
            ),
            # Biology kept, measured the same way: treated wells clustering by what they do.
            "silhouette_moa": _label_plan(metadata, treated, why, settings["moa_key"], "MoA"),
            "silhouette_target": _label_plan(metadata, treated, why, settings["target_key"], "target"),
        }

    def evaluate(self, x: np.ndarray) -> list[Kpi]:
        """The five batch KPIs of one method's profiles (rows aligned with the metadata), in catalogue order."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or len(x) != self.n_wells:
            raise ValueError(f"expected a ({self.n_wells}, features) matrix, got shape {x.shape}")
        graphs: dict[bytes, NeighborsResults] = {}
        compute: dict[str, Callable[[np.ndarray, _Plan], float]] = {
            "silhouette_plate": _silhouette,
            "silhouette_batch": _silhouette,
            "ilisi_batch": partial(self._ilisi, graphs=graphs),
            "graph_connectivity": partial(self._connectivity, graphs=graphs),
            "batch_classifier_accuracy": self._classifier,
        }
        with threadpool_limits(limits=self.threads):
            return [self._kpi(name, x, compute[name]) for name in KPIS]

    def label_silhouettes(self, x: np.ndarray) -> list[Kpi]:
        """``silhouette_moa`` and ``silhouette_target``: cosine silhouettes of the treated wells by label."""
        x = np.asarray(x, dtype=np.float64)
        return [self._kpi(name, x, _silhouette) for name in ("silhouette_moa", "silhouette_target")]

    def _kpi(self, name: str, x: np.ndarray, compute: Callable[[np.ndarray, _Plan], float]) -> Kpi:
        """One KPI, or its row saying why it has no value on these profiles."""
        plan = self._plans[name]
        if plan.why:
            return missing(name, plan.n, plan.why)
        profiles = x[plan.rows]
        problem = _profile_problem(profiles, cosine=name != "batch_classifier_accuracy")
        if problem:
            return missing(name, plan.n, problem)
        started = time.perf_counter()
        value = float(compute(profiles, plan))
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started
        return catalogued(name, value, plan.n, plan.note)

    def _knn_plan(self, plan: _Plan) -> _Plan:
        """``plan`` with the graph's k in its note; not computable where k is not below the number of wells."""
        if plan.why:
            return plan
        if self.neighbors >= plan.n:
            return replace(plan, why=f"k = {self.neighbors} neighbours but only {plan.n} treated wells")
        return replace(plan, note=f"k = {self.neighbors}")

    def _graph(self, profiles: np.ndarray, plan: _Plan, graphs: dict[bytes, NeighborsResults]) -> NeighborsResults:
        """The kNN graph of these rows, built once per evaluation and shared by the kNN KPIs."""
        key = plan.rows.tobytes()
        if key not in graphs:
            graphs[key] = knn_graph(profiles, self.neighbors, self.threads)
        return graphs[key]

    def _ilisi(self, profiles: np.ndarray, plan: _Plan, graphs: dict[bytes, NeighborsResults]) -> float:
        """Scaled iLISI of the batches among treated wells: 0 where neighbourhoods hold one batch, 1 where
        fully mixed. Controls are left out because most corrections anchor on them."""
        import scib_metrics

        return scib_metrics.ilisi_knn(self._graph(profiles, plan, graphs), plan.codes, scale=True)

    def _connectivity(self, profiles: np.ndarray, plan: _Plan, graphs: dict[bytes, NeighborsResults]) -> float:
        """Mean share of each perturbation's wells in the largest connected piece of its kNN subgraph."""
        import scib_metrics

        return scib_metrics.graph_connectivity(self._graph(profiles, plan, graphs), plan.codes)

    def _classifier(self, profiles: np.ndarray, plan: _Plan) -> float:
        """Accuracy of predicting the batch of held-out perturbations, pooled over the grouped folds.

        Holding out whole perturbations keeps the model from recognising a
        compound's phenotype in place of the batch. The folds run side by side,
        one BLAS thread each: multithreaded BLAS on these thin matrices is
        slower than one thread.
        """
        with threadpool_limits(limits=1):
            correct = Parallel(n_jobs=min(self.threads, len(plan.folds)), prefer="threads")(
                delayed(self._fold_correct)(profiles, plan.codes, train, test) for train, test in plan.folds
            )
        return sum(correct) / plan.n

    def _fold_correct(self, profiles: np.ndarray, codes: np.ndarray, train: np.ndarray, test: np.ndarray) -> int:
        """Number of test wells whose batch a model fitted on the training wells gets right."""
        model = make_pipeline(
            StandardScaler(), LogisticRegression(max_iter=_CLASSIFIER_MAX_ITER, random_state=self.seed)
        )
        model.fit(profiles[train], codes[train])
        return int((model.predict(profiles[test]) == codes[test]).sum())


def knn_graph(profiles: np.ndarray, neighbors: int, threads: int) -> NeighborsResults:
    """Exact cosine kNN graph in scib-metrics' form: each row's own index first (distance 0), then its
    ``neighbors`` nearest other rows by euclidean distance between L2-normalised rows."""
    from scib_metrics.nearest_neighbors import NeighborsResults

    search = NearestNeighbors(n_neighbors=neighbors, algorithm="brute", n_jobs=threads).fit(normalize(profiles))
    distances, indices = search.kneighbors()
    own = np.arange(len(profiles))[:, None]
    return NeighborsResults(
        indices=np.hstack([own, indices]), distances=np.hstack([np.zeros_like(own, dtype=np.float64), distances])
    )


def _silhouette(profiles: np.ndarray, plan: _Plan) -> float:
    """The silhouette KPIs' compute step, in the signature :meth:`BatchEvaluator.evaluate` calls."""
    return cosine_silhouette(profiles, plan.codes)


def _text(metadata: pd.DataFrame, column: str) -> np.ndarray:
    """``column`` (present) as text labels, missing values ''."""
    return text(metadata, column).astype(str)


def _treated_wells(metadata: pd.DataFrame, replicate_key: str) -> tuple[np.ndarray, str]:
    """Row numbers of the treated wells, and why there are none."""
    if replicate_key not in metadata:
        return np.array([], dtype=int), f"no {replicate_key} column: treated wells are undefined"
    rows = np.flatnonzero(treated(metadata, replicate_key))
    return rows, "" if len(rows) else "no treated wells"


def _label_plan(metadata: pd.DataFrame, treated: np.ndarray, why: str, column: str, what: str) -> _Plan:
    """Treated wells with a ``column`` value, coded; not computable for fewer than 2 values or one per well."""
    empty = np.array([], dtype=int)
    if why:
        return _Plan(treated, empty, why)
    if column not in metadata:
        return _Plan(treated, empty, f"no {column} column")
    labels = _text(metadata, column)[treated]
    rows = treated[labels != ""]
    if not len(rows):
        return _Plan(rows, empty, f"no treated well has a {column} value")
    codes, counts = _label_codes(labels[labels != ""])
    if len(counts) < 2:
        return _Plan(rows, codes, f"a single {what} ({column}) among the {len(rows)} treated wells")
    if len(counts) == len(rows):
        return _Plan(rows, codes, f"too few treated wells: each of the {len(rows)} has its own {column} value")
    return _Plan(rows, codes)


def _replicate_plan(metadata: pd.DataFrame, treated: np.ndarray, why: str, replicate_key: str) -> _Plan:
    """Treated wells coded by perturbation; not computable where no perturbation has two wells."""
    if why:
        return _Plan(treated, np.array([], dtype=int), why)
    codes, counts = _label_codes(_text(metadata, replicate_key)[treated])
    if counts.max() < 2:
        return _Plan(treated, codes, f"no {replicate_key} value has two treated wells")
    return _Plan(treated, codes)


def _classifier_plan(metadata: pd.DataFrame, batches: _Plan, replicate_key: str, folds: int, seed: int) -> _Plan:
    """``batches`` with folds that never split a perturbation's wells, and the chance level in its note."""
    if batches.why:
        return batches
    groups, _ = _label_codes(_text(metadata, replicate_key)[batches.rows])
    n_groups = int(groups.max()) + 1
    if n_groups < 2:
        return replace(batches, why=f"a single {replicate_key} value: no perturbation to hold out")
    splitter = GroupKFold(n_splits=min(folds, n_groups), shuffle=True, random_state=seed)
    splits = list(splitter.split(batches.rows, batches.codes, groups))
    single = sum(len(np.unique(batches.codes[train])) < 2 for train, _ in splits)
    if single:
        return replace(
            batches, why=f"{single} training folds hold a single batch: batch confounded with {replicate_key}"
        )
    chance = np.bincount(batches.codes).max() / batches.n
    note = f"chance {chance:.2f}; {len(splits)} folds grouped by {replicate_key}"
    return replace(batches, folds=splits, note=note)


def _profile_problem(profiles: np.ndarray, cosine: bool) -> str:
    """Why these profiles cannot be measured ('' where they can): non-finite values; for cosine, zero vectors."""
    bad = ~np.isfinite(profiles).all(axis=1)
    if bad.any():
        return f"{int(bad.sum())} profiles have non-finite values"
    zero = ~profiles.any(axis=1)
    if cosine and zero.any():
        return f"{int(zero.sum())} profiles are zero vectors: cosine distance is undefined"
    return ""
