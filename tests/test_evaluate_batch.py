"""The batch KPIs against their references: scikit-learn's silhouette, scib-metrics on an independently built
kNN graph, and data whose answer is known (separated or mixed batches, tight replicate clusters)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import silhouette_score
from sklearn.neighbors import NearestNeighbors
from sklearn.preprocessing import normalize

from workflow_scripts.evaluate import batch
from workflow_scripts.evaluate.batch import BatchEvaluator, cosine_silhouette, knn_graph
from workflow_scripts.evaluate.kpi import CATALOGUE

pytestmark = pytest.mark.jax

K = 15
SETTINGS = {
    "replicate_key": "Metadata_Perturbation",
    "batch_key": "Metadata_Batch",
    "moa_key": "Metadata_MoA",
    "target_key": "Metadata_Target",
    "neighbors": K,
    "classifier_folds": 5,
    "seed": 0,
}
N_PERTURBATIONS, REPLICATES, N_NEGCON = 30, 8, 16
N_TREATED = N_PERTURBATIONS * REPLICATES
BATCH_KPIS = [name for name, (group, _) in CATALOGUE.items() if group == "batch"]


@pytest.fixture(scope="module")
def scib():
    """scib-metrics, imported once for the module (the import takes seconds)."""
    import scib_metrics

    return scib_metrics


def layout(n_batches: int = 2, seed: int = 0) -> pd.DataFrame:
    """30 perturbations of 8 replicates and 16 negcons, on 2 plates per batch; every perturbation in every batch."""
    rng = np.random.default_rng(seed)
    perturbation = np.repeat([f"P{i:02d}" for i in range(N_PERTURBATIONS)], REPLICATES)
    batch_of = np.tile(np.arange(REPLICATES) % n_batches, N_PERTURBATIONS)
    negcon_batch = np.arange(N_NEGCON) % n_batches
    batches = np.concatenate([batch_of, negcon_batch])
    plates = batches * 2 + rng.integers(0, 2, len(batches))
    return pd.DataFrame(
        {
            "Metadata_Batch": [f"B{b}" for b in batches],
            "Metadata_Plate": [f"PL{p}" for p in plates],
            "Metadata_Perturbation": [*perturbation, *["DMSO"] * N_NEGCON],
            "Metadata_PertType": ["trt"] * N_TREATED + ["negcon"] * N_NEGCON,
        }
    )


def profiles(meta: pd.DataFrame, batch_shift: float, perturbation_effect: float, seed: int = 0) -> np.ndarray:
    """Gaussian profiles: a random centre per perturbation and per batch, scaled, plus unit noise."""
    rng = np.random.default_rng(seed)
    d = 32
    perturbation = pd.factorize(meta["Metadata_Perturbation"])[0]
    batches = pd.factorize(meta["Metadata_Batch"])[0]
    x = rng.normal(size=(len(meta), d))
    x += perturbation_effect * rng.normal(size=(perturbation.max() + 1, d))[perturbation]
    x += batch_shift * rng.normal(size=(batches.max() + 1, d))[batches]
    return x


def by_name(kpis: list) -> dict:
    return {k.kpi: k for k in kpis}


def reference_graph(x: np.ndarray):
    """scib-metrics' NeighborsResults from a brute-force sklearn search, self included as the nearest point."""
    from scib_metrics.nearest_neighbors import NeighborsResults

    unit = normalize(x)
    distances, indices = NearestNeighbors(n_neighbors=K + 1).fit(unit).kneighbors(unit)
    return NeighborsResults(indices=indices, distances=distances)


@pytest.mark.parametrize(
    "labels",
    [
        np.repeat(["a", "b", "c", "d"], 25),
        np.r_[np.zeros(60), np.ones(39), [2]],  # a singleton cluster
        np.r_[np.arange(49), [0] * 51],  # 48 singletons and one large cluster
        np.r_[[0, 0], np.arange(1, 99)],  # n - 1 labels: all but one singleton
        np.random.default_rng(1).integers(0, 7, 100),
    ],
    ids=["balanced", "singleton", "many-singletons", "n-minus-1-labels", "random"],
)
def test_cosine_silhouette_equals_sklearn(labels: np.ndarray) -> None:
    x = np.random.default_rng(0).normal(size=(100, 12)) + 0.3
    assert cosine_silhouette(x, labels) == pytest.approx(silhouette_score(x, labels, metric="cosine"), abs=1e-9)


def test_cosine_silhouette_in_blocks_equals_sklearn(monkeypatch: pytest.MonkeyPatch) -> None:
    x = np.random.default_rng(2).normal(size=(200, 8))
    labels = np.random.default_rng(3).integers(0, 5, 200)
    monkeypatch.setattr(batch, "_SILHOUETTE_BLOCK", 40)
    assert cosine_silhouette(x, labels) == pytest.approx(silhouette_score(x, labels, metric="cosine"), abs=1e-9)


def test_cosine_silhouette_refuses_zero_profiles_and_bad_label_counts() -> None:
    x = np.random.default_rng(0).normal(size=(10, 4))
    x[[2, 5]] = 0
    with pytest.raises(ValueError, match="2 profiles are zero vectors"):
        cosine_silhouette(x, np.arange(10) % 2)
    with pytest.raises(ValueError, match="got 1 labels for 10 profiles"):
        cosine_silhouette(np.ones((10, 4)), np.zeros(10))


def test_knn_graph_lists_self_first_then_the_k_nearest() -> None:
    x = np.random.default_rng(0).normal(size=(N_TREATED, 32))
    graph = knn_graph(x, K, threads=1)
    reference = reference_graph(x)
    assert graph.indices.shape == (N_TREATED, K + 1)
    np.testing.assert_array_equal(graph.indices[:, 0], np.arange(N_TREATED))
    np.testing.assert_array_equal(graph.indices, reference.indices)
    np.testing.assert_allclose(graph.distances, reference.distances, atol=1e-7)


def test_knn_kpis_equal_scib_on_an_independent_graph(scib) -> None:
    meta = layout()
    x = profiles(meta, batch_shift=0.3, perturbation_effect=0.5)
    kpis = by_name(BatchEvaluator(meta, SETTINGS, threads=1).evaluate(x))
    treated = x[:N_TREATED]
    graph = reference_graph(treated)
    batches = meta["Metadata_Batch"].to_numpy()[:N_TREATED]
    perturbations = meta["Metadata_Perturbation"].to_numpy()[:N_TREATED]
    assert kpis["ilisi_batch"].value == pytest.approx(float(scib.ilisi_knn(graph, batches, scale=True)), abs=1e-6)
    assert kpis["graph_connectivity"].value == pytest.approx(scib.graph_connectivity(graph, perturbations), abs=1e-12)


def test_separated_batches_leave_no_mixing_and_mixed_batches_do(scib) -> None:
    meta = layout()
    separated = by_name(BatchEvaluator(meta, SETTINGS, threads=1).evaluate(profiles(meta, 20.0, 0.0)))
    mixed = by_name(BatchEvaluator(meta, SETTINGS, threads=1).evaluate(profiles(meta, 0.0, 0.0)))
    assert separated["ilisi_batch"].value < 0.05
    assert mixed["ilisi_batch"].value > 0.4
    assert separated["silhouette_batch"].value > 0.5
    assert abs(mixed["silhouette_batch"].value) < 0.05


def test_tight_replicate_clusters_are_fully_connected(scib) -> None:
    meta = layout()
    kpis = by_name(BatchEvaluator(meta, SETTINGS, threads=1).evaluate(profiles(meta, 0.0, 50.0)))
    assert kpis["graph_connectivity"].value == 1.0


def test_classifier_finds_a_batch_shift_and_not_its_absence(scib) -> None:
    meta = layout()
    shifted = by_name(BatchEvaluator(meta, SETTINGS, threads=2).evaluate(profiles(meta, 1.0, 1.0)))
    clean = by_name(BatchEvaluator(meta, SETTINGS, threads=2).evaluate(profiles(meta, 0.0, 1.0)))
    assert shifted["batch_classifier_accuracy"].value > 0.95
    assert clean["batch_classifier_accuracy"].value == pytest.approx(0.5, abs=0.15)
    assert clean["batch_classifier_accuracy"].note.startswith("chance 0.50; 5 folds grouped by Metadata_Perturbation")


def test_evaluate_returns_the_batch_kpis_in_catalogue_order(scib) -> None:
    meta = layout()
    kpis = BatchEvaluator(meta, SETTINGS, threads=1).evaluate(profiles(meta, 0.5, 1.0))
    assert [k.kpi for k in kpis] == BATCH_KPIS
    assert all(k.computable for k in kpis)
    assert [k.n_profiles for k in kpis] == [N_TREATED] * len(BATCH_KPIS)
    assert [k.direction for k in kpis] == [CATALOGUE[name][1] for name in BATCH_KPIS]


def test_categorical_and_missing_labels_read_like_text(scib) -> None:
    meta = layout()
    x = profiles(meta, 0.5, 1.0)
    meta.loc[N_TREATED - 1, "Metadata_Plate"] = None
    expected = BatchEvaluator(meta, SETTINGS, threads=1).evaluate(x)
    categorical = BatchEvaluator(meta.astype("category"), SETTINGS, threads=1).evaluate(x)
    assert categorical == expected
    assert by_name(expected)["silhouette_plate"].n_profiles == N_TREATED - 1
    assert by_name(expected)["silhouette_batch"].n_profiles == N_TREATED


def test_a_single_batch_leaves_the_batch_kpis_not_computable(scib) -> None:
    meta = layout(n_batches=1)
    kpis = by_name(BatchEvaluator(meta, SETTINGS, threads=1).evaluate(profiles(meta, 0.0, 1.0)))
    for name in ("silhouette_batch", "ilisi_batch", "batch_classifier_accuracy"):
        assert math.isnan(kpis[name].value)
        assert kpis[name].note == f"not computable: a single batch (Metadata_Batch) among the {N_TREATED} treated wells"
    assert kpis["silhouette_plate"].computable
    assert kpis["graph_connectivity"].computable


@pytest.mark.parametrize(
    ("change", "why", "affected"),
    [
        (lambda m: m.drop(columns="Metadata_Batch"), "no Metadata_Batch column", BATCH_KPIS[1:3] + BATCH_KPIS[4:]),
        (lambda m: m.drop(columns="Metadata_Plate"), "no Metadata_Plate column", BATCH_KPIS[:1]),
        (lambda m: m.assign(Metadata_PertType="negcon"), "no treated wells", BATCH_KPIS),
        (
            lambda m: m.drop(columns="Metadata_Perturbation"),
            "no Metadata_Perturbation column: treated wells are undefined",
            BATCH_KPIS,
        ),
        (lambda m: m.iloc[list(range(12)) + [-1]], "k = 15 neighbours but only 12 treated wells", BATCH_KPIS[2:4]),
    ],
    ids=["no-batch", "no-plate", "no-treated", "no-replicate-key", "k-too-large"],
)
def test_unusable_metadata_gives_reasons(change, why: str, affected: list[str]) -> None:
    meta = change(layout()).reset_index(drop=True)
    kpis = by_name(
        BatchEvaluator(meta, SETTINGS, threads=1).evaluate(np.random.default_rng(0).normal(size=(len(meta), 8)))
    )
    for name in affected:
        assert math.isnan(kpis[name].value)
        assert kpis[name].note == f"not computable: {why}"


def test_a_zero_profile_leaves_only_the_classifier(scib) -> None:
    meta = layout()
    x = profiles(meta, 1.0, 1.0)
    x[[3, 7]] = 0
    kpis = by_name(BatchEvaluator(meta, SETTINGS, threads=1).evaluate(x))
    for name in BATCH_KPIS[:4]:
        assert kpis[name].note == "not computable: 2 profiles are zero vectors: cosine distance is undefined"
    assert kpis["batch_classifier_accuracy"].computable


def test_evaluate_refuses_misaligned_profiles() -> None:
    with pytest.raises(ValueError, match=r"expected a \(256, features\) matrix"):
        BatchEvaluator(layout(), SETTINGS, threads=1).evaluate(np.ones((10, 4)))


def test_label_silhouettes_equal_sklearn_over_treated_wells_and_say_when_labels_are_missing() -> None:
    meta = layout()
    moa = {f"P{i:02d}": f"M{i % 3}" for i in range(N_PERTURBATIONS)}
    meta["Metadata_MoA"] = meta["Metadata_Perturbation"].map(moa)  # DMSO: no MoA
    x = profiles(meta, 0.0, 5.0)
    moa_row, target_row = BatchEvaluator(meta, SETTINGS, threads=1).label_silhouettes(x)
    treated = (meta["Metadata_PertType"] == "trt").to_numpy()
    expected = silhouette_score(x[treated], meta.loc[treated, "Metadata_MoA"], metric="cosine")
    assert moa_row.kpi == "silhouette_moa" and moa_row.value == pytest.approx(expected, abs=1e-9)
    assert moa_row.n_profiles == N_TREATED and moa_row.direction == "higher"
    assert target_row.kpi == "silhouette_target" and target_row.note == "not computable: no Metadata_Target column"
