"""Biology KPIs: mAP and activity equal copairs', MoA retrieval finds planted MoAs, missing KPIs say why."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from copairs.map import average_precision, mean_average_precision
from copairs.map.multilabel import average_precision as multilabel_average_precision
from copairs.matching import assign_reference_index
from sklearn.metrics import pairwise_distances
from sklearn.preprocessing import StandardScaler

from workflow_scripts.evaluate.kpi import CATALOGUE
from workflow_scripts.evaluate.retrieval import KPIS, BiologyEvaluator

KEY = "Metadata_Perturbation"
SETTINGS = {"null_size": 500, "seed": 3, "fdr": 0.1}
BATCH_SOURCE = {"b1": "s1", "b2": "s1", "b3": "s2"}
TARGETS = np.array(["T0|TX", "T1", "T2|TX", "T3", "T4", "T5|T1"])
BIOLOGY = [name for name, (group, _) in CATALOGUE.items() if group == "biology" and not name.startswith("silhouette")]


def wells(seed=0, n_perturbations=24, replicates=6, controls=18, moa_strength=2.0, source_shift=0.0, noise=1.0):
    """Perturbations of 6 MoAs (4 each; targets multi-valued), replicates and controls spread over 3 batches."""
    rng = np.random.default_rng(seed)
    moa = np.arange(n_perturbations) % 6
    centres = rng.normal(size=(6, 24))[moa] * moa_strength + rng.normal(size=(n_perturbations, 24))
    perturbation = np.repeat(np.arange(n_perturbations), replicates)
    batch = np.array(list(BATCH_SOURCE))[np.concatenate([np.arange(len(perturbation)), np.arange(controls)]) % 3]
    x = np.vstack([centres[perturbation], np.zeros((controls, 24))]) + rng.normal(size=(len(batch), 24)) * noise
    source = np.array([BATCH_SOURCE[b] for b in batch])
    x += (source == "s2")[:, None] * rng.normal(size=24) * source_shift
    treated = len(perturbation)
    meta = pd.DataFrame(
        {
            "Metadata_Source": source,
            "Metadata_Batch": batch,
            "Metadata_Plate": batch,
            KEY: [f"p{p:02d}" for p in perturbation] + ["DMSO"] * controls,
            "Metadata_PertType": ["trt"] * treated + ["negcon"] * controls,
            "Metadata_MoA": [f"moa{m}" for m in moa[perturbation]] + [None] * controls,
            "Metadata_Target": list(TARGETS[moa[perturbation]]) + [None] * controls,
        }
    )
    return meta, x


def kpis(result) -> dict[str, float]:
    return {row.kpi: row.value for row in result.kpis}


def notes(result) -> dict[str, str]:
    return {row.kpi: row.note for row in result.kpis}


def copairs_activity(meta: pd.DataFrame, x: np.ndarray, reference: str, cache) -> pd.DataFrame:
    """copairs' own phenotypic activity, called as its documentation does."""
    if reference == "negcon":
        meta = assign_reference_index(meta, "Metadata_PertType == 'negcon'", reference_col="Metadata_Reference_Index")
        same, diff = [KEY, "Metadata_Reference_Index"], [KEY, "Metadata_Reference_Index"]
    else:
        treated = (meta["Metadata_PertType"] != "negcon").to_numpy()
        meta, x, same, diff = meta[treated], x[treated], [KEY], [KEY]
    ap = average_precision(meta, x, same, [], [], diff, progress_bar=False)
    return mean_average_precision(
        ap, [KEY], SETTINGS["null_size"], SETTINGS["fdr"], SETTINGS["seed"], progress_bar=False, cache_dir=cache
    ).set_index(KEY)


def test_activity_equals_copairs_for_every_method(tmp_path):
    """One evaluator, two methods: each method's mAP, p and q equal copairs' on that method's profiles.

    Noisy wells, so that APs spread (0.1 to 0.96) and p-values vary around the threshold.
    """
    meta, x = wells(noise=3.0)
    evaluator = BiologyEvaluator(meta, SETTINGS, threads=2)
    for method, values in {"none": x, "noisier": x + np.random.default_rng(9).normal(size=x.shape) * 2}.items():
        result = evaluator.evaluate(values)
        for reference in ("negcon", "nonrep"):
            ours = result.activity[result.activity["reference"] == reference].set_index(KEY)
            theirs = copairs_activity(meta, values, reference, tmp_path / method / reference).loc[ours.index]
            np.testing.assert_allclose(ours["mean_average_precision"], theirs["mean_average_precision"], rtol=1e-12)
            np.testing.assert_array_equal(ours["p_value"], theirs["p_value"])
            np.testing.assert_allclose(ours["q_value"], theirs["corrected_p_value"], rtol=1e-12)
            assert (ours["significant"] == (theirs["corrected_p_value"] < SETTINGS["fdr"])).all()
            assert (ours["n_replicates"] == 6).all() and len(ours) == 24
            assert kpis(result)[f"map_vs_{reference}"] == pytest.approx(theirs["mean_average_precision"].mean())
            assert kpis(result)[f"fraction_retrieved_vs_{reference}"] == pytest.approx(ours["significant"].mean())
    assert list(result.activity.columns) == [KEY, "reference", "n_replicates", "mean_average_precision"] + [
        "p_value",
        "q_value",
        "significant",
    ]


@pytest.mark.parametrize(
    ("kpi", "column"), [("map_moa_consensus", "Metadata_MoA"), ("map_target_consensus", "Metadata_Target")]
)
def test_consensus_map_equals_copairs_multilabel(kpi, column, tmp_path):
    meta, x = wells(moa_strength=0.7)
    result = BiologyEvaluator(meta, SETTINGS, threads=1).evaluate(x)
    consensus = result.consensus
    features = [name for name in consensus.columns if name.startswith("feature_")]
    labels = consensus[[KEY, column]].assign(**{column: consensus[column].str.split("|")})

    ap = multilabel_average_precision(
        labels, consensus[features].to_numpy(), [column], [], [], [column], multilabel_col=column, progress_bar=False
    )
    theirs = mean_average_precision(ap, [column], 100, 0.05, 0, progress_bar=False, cache_dir=tmp_path)

    assert kpis(result)[kpi] == pytest.approx(theirs["mean_average_precision"].mean(), rel=1e-12)
    assert 0.3 < kpis(result)[kpi] < 1


def test_consensus_profiles_are_medians_of_treated_wells():
    meta, x = wells()
    names = [f"f{i}" for i in range(x.shape[1])]
    consensus = BiologyEvaluator(meta, SETTINGS, threads=1).evaluate(x, names).consensus

    treated = (meta["Metadata_PertType"] != "negcon").to_numpy()
    expected = pd.DataFrame(x[treated], columns=names).groupby(meta.loc[treated, KEY].to_numpy()).median()
    assert list(consensus.columns[:6]) == [KEY, "Metadata_MoA", "Metadata_Target", "Metadata_PertType", "n_wells"] + [
        "f0"
    ]
    np.testing.assert_allclose(consensus[names].to_numpy(), expected.to_numpy())
    assert consensus[KEY].tolist() == expected.index.tolist()
    assert (consensus["n_wells"] == 6).all() and consensus.loc[0, "Metadata_Target"] == "T0|TX"


def test_planted_moas_are_retrieved_better_than_shuffled_labels():
    meta, x = wells(seed=4)
    shuffled = meta.copy()
    perturbations = shuffled[KEY].str.startswith("p")
    mapping = dict(zip(sorted(set(shuffled.loc[perturbations, KEY])), np.random.default_rng(5).permutation(24) % 6))
    shuffled.loc[perturbations, "Metadata_MoA"] = [f"moa{mapping[p]}" for p in shuffled.loc[perturbations, KEY]]

    planted = kpis(BiologyEvaluator(meta, SETTINGS, threads=1).evaluate(x))
    baseline = kpis(BiologyEvaluator(shuffled, SETTINGS, threads=1).evaluate(x))

    # nsb_moa is left out: its neighbour may be a replicate in another batch, right under any labelling.
    for kpi in ("map_moa_consensus", "nsbp_moa", "percent_matching_moa"):
        assert planted[kpi] > baseline[kpi] + 0.2 * (100 if kpi.startswith("percent") else 1), kpi
    assert planted["map_moa_consensus"] > 0.9 and baseline["map_moa_consensus"] < 0.5


def kim_nearest_neighbour_accuracy(meta: pd.DataFrame, x: np.ndarray, column: str, perturbation: bool) -> float:
    """Kim et al.'s ``nearest_neighbor_classifier_NSBW`` read directly, for labels that may hold several values."""
    rows = ((meta["Metadata_PertType"] != "negcon") & meta[column].notna()).to_numpy()
    labels = [set(value.split("|")) for value in meta.loc[rows, column]]
    batches, keys = meta.loc[rows, "Metadata_Batch"].to_numpy(), meta.loc[rows, KEY].to_numpy()
    distances = pairwise_distances(StandardScaler().fit_transform(x[rows]), metric="cosine")
    right = 0
    for i in range(len(distances)):
        row = distances[i].copy()
        row[i] = np.inf
        row[[j for j in range(len(row)) if batches[j] == batches[i] and labels[j] & labels[i]]] = np.inf
        if perturbation:
            row[keys == keys[i]] = np.inf
        right += bool(labels[int(np.argmin(row))] & labels[i])
    return right / len(distances)


def test_nsb_and_nsbp_equal_a_direct_reading_of_kim_et_al():
    meta, x = wells(seed=6, moa_strength=0.8, noise=2.0)
    result = kpis(BiologyEvaluator(meta, SETTINGS, threads=2).evaluate(x))

    for name, column in (("moa", "Metadata_MoA"), ("target", "Metadata_Target")):
        assert result[f"nsb_{name}"] == pytest.approx(kim_nearest_neighbour_accuracy(meta, x, column, False))
        assert result[f"nsbp_{name}"] == pytest.approx(kim_nearest_neighbour_accuracy(meta, x, column, True))
    assert result["nsbp_moa"] < result["nsb_moa"] < 1


def test_cross_site_top1_is_one_when_sources_only_shift_the_profiles():
    meta, x = wells(source_shift=1.0, noise=0.3)
    result = BiologyEvaluator(meta, SETTINGS, threads=1).evaluate(x)

    assert kpis(result)["cross_site_top1"] == kpis(result)["cross_site_top5"] == 1.0
    assert {row.kpi: row.n_profiles for row in result.kpis}["cross_site_top1"] == 48  # 24 perturbations x 2 sources


def rank_stability(consistent: bool) -> float:
    """Perturbation effects of graded strength; the same order in every batch, or an order of its own per batch."""
    meta, x = wells(seed=8, controls=60)
    treated = (meta["Metadata_PertType"] != "negcon").to_numpy()
    rng = np.random.default_rng(8)
    order = {batch: np.arange(24) if consistent else rng.permutation(24) for batch in BATCH_SOURCE}
    index = meta.loc[treated, KEY].str[1:].astype(int).to_numpy()
    rank = np.array([order[batch][i] for batch, i in zip(meta.loc[treated, "Metadata_Batch"], index)])
    x[treated] = x[treated] * np.linspace(0, 2, 24)[rank][:, None] + rng.normal(size=(treated.sum(), x.shape[1]))
    return kpis(BiologyEvaluator(meta, SETTINGS, threads=1).evaluate(x))["replicate_rank_stability"]


def test_replicate_ranks_agree_across_batches_only_when_effects_do():
    consistent, shuffled = rank_stability(True), rank_stability(False)

    assert consistent > 0.7 and shuffled < 0.2


def test_every_biology_kpi_is_reported_once_with_its_profiles():
    meta, x = wells(noise=2.0)  # noisier than the default, where every mAP is 1 and ranks cannot correlate
    result = BiologyEvaluator(meta, SETTINGS, threads=1).evaluate(x)

    assert sorted(row.kpi for row in result.kpis) == sorted(BIOLOGY)
    assert all(row.computable for row in result.kpis), notes(result)
    n_profiles = {row.kpi: row.n_profiles for row in result.kpis}
    assert n_profiles["map_vs_negcon"] == 144 + 18 and n_profiles["map_vs_nonrep"] == n_profiles["nsb_moa"] == 144
    assert n_profiles["map_moa_consensus"] == n_profiles["percent_matching_moa"] == 24


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda m: m.assign(Metadata_Source="s1"), {"cross_site_top1": "a single Metadata_Source"}),
        (
            lambda m: m.drop(columns="Metadata_MoA"),
            {
                kpi: "no Metadata_MoA column"
                for kpi in ("map_moa_consensus", "percent_matching_moa", "nsb_moa", "nsbp_moa")
            },
        ),
        (
            lambda m: m.assign(Metadata_Batch="b1"),
            {"nsb_target": "a single Metadata_Batch", "replicate_rank_stability": "a single Metadata_Batch"},
        ),
        (lambda m: m[m["Metadata_PertType"] != "negcon"], {"map_vs_negcon": "no negative-control wells"}),
        (
            lambda m: m.assign(**{KEY: [f"w{i}" for i in range(len(m))]}),
            {kpi: "two or more treated wells" for kpi in ("map_vs_nonrep", "fraction_retrieved_vs_negcon")}
            | {"percent_replicating": "two treated wells"},
        ),
    ],
    ids=["single source", "no MoA column", "single batch", "no controls", "no replicates"],
)
def test_missing_kpis_say_why(change, why):
    meta, x = wells()
    changed = change(meta)
    result = BiologyEvaluator(changed, SETTINGS, threads=1).evaluate(x[changed.index.to_numpy()])

    assert sorted(row.kpi for row in result.kpis) == sorted(BIOLOGY)
    for kpi, reason in why.items():
        assert np.isnan(kpis(result)[kpi]) and reason in notes(result)[kpi], (kpi, notes(result)[kpi])
    assert not np.isnan(kpis(result)["map_target_consensus"])


def test_without_the_replicate_key_every_kpi_says_so():
    meta, x = wells()
    result = BiologyEvaluator(meta.drop(columns=KEY), SETTINGS, threads=1).evaluate(x)

    assert sorted(row.kpi for row in result.kpis) == sorted(BIOLOGY) == sorted(KPIS)
    assert {row.note for row in result.kpis} == {f"not computable: no {KEY} column"}
    assert result.activity.empty and result.consensus.empty
