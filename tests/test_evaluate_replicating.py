"""Percent replicating and percent matching equal a plain CPJUMP1-style computation, on a real LINCS plate."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from workflow_scripts.evaluate.replicating import MAX_NULL_MEMBERS, percent_matching, percent_replicating

NULL_SIZE = 4000
SEED = 7


@pytest.fixture(scope="module")
def lincs(shared_fixtures) -> pd.DataFrame:
    """384 wells x 454 features; compounds at 6 doses (12 for two of them) are the replicates; DMSO dropped."""
    table = pd.read_csv(shared_fixtures / "profiles/lincs-SQ00015054/SQ00015054_normalized_feature_select.csv.gz")
    return table[table["Metadata_broad_sample"] != "DMSO"].reset_index(drop=True)


def plain_draws(groups: list[np.ndarray], width: int, null_size: int, seed: int) -> np.ndarray:
    """The documented draws, one at a time: distinct groups, then one member of each."""
    rng = np.random.default_rng(seed)
    picks = [rng.choice(len(groups), width, replace=False) for _ in range(null_size)]
    fractions = rng.random((null_size, width))
    return np.array(
        [[groups[g][int(f * len(groups[g]))] for g, f in zip(pick, row)] for pick, row in zip(picks, fractions)]
    )


def cpjump1_median(values: np.ndarray) -> float:
    """CPJUMP1's ``corr_between_replicates``: nanmedian of the correlation matrix without its diagonal."""
    corr = np.corrcoef(values)
    np.fill_diagonal(corr, np.nan)
    return float(np.nanmedian(corr))


def plain_percent(values: np.ndarray, groups: dict[str, np.ndarray], null_size: int, seed: int, percentile=95):
    """Per-group medians, a null per size from the same draws, and the percent above the null's percentile."""
    members = [groups[name] for name in sorted(groups)]
    scored = {name: rows for name, rows in groups.items() if len(rows) >= 2}
    width = min(max(min(len(rows), MAX_NULL_MEMBERS) for rows in scored.values()), len(members))
    draws = plain_draws(members, width, null_size, seed)
    thresholds, medians = {}, {}
    for name, rows in scored.items():
        size = min(len(rows), MAX_NULL_MEMBERS)
        assert size <= width, "the test's data must give every group a null"
        if size not in thresholds:
            null = [cpjump1_median(values[draw[:size]]) for draw in draws]
            thresholds[size] = float(np.nanpercentile(null, percentile))
        medians[name] = cpjump1_median(values[rows])
    above = [medians[name] > thresholds[min(len(groups[name]), MAX_NULL_MEMBERS)] for name in medians]
    return 100 * float(np.mean(above)), thresholds, pd.Series(medians)


def test_percent_replicating_equals_plain_computation_on_lincs(lincs):
    features = [c for c in lincs.columns if not c.startswith("Metadata_")]
    values = lincs[features].to_numpy(np.float64)
    groups = {name: np.flatnonzero(lincs["Metadata_broad_sample"] == name) for name in lincs["Metadata_broad_sample"]}

    result = percent_replicating(lincs, "Metadata_broad_sample", null_size=NULL_SIZE, seed=SEED)
    percent, thresholds, medians = plain_percent(values, groups, NULL_SIZE, SEED)

    assert sorted(result.thresholds) == sorted(thresholds) == [6, 12]
    for size, threshold in thresholds.items():
        assert result.thresholds[size] == pytest.approx(threshold, abs=1e-12)
    pd.testing.assert_series_equal(result.groups["median"], medians[result.groups.index], check_names=False)
    assert result.percent == pytest.approx(percent)
    assert 50 < result.percent < 100  # compounds at low doses do not replicate
    assert result.n_profiles == len(lincs)


def test_percent_matching_equals_plain_computation_with_multiple_labels():
    """60 consensus profiles of 10 MoAs; every 8th also holds the label "shared", in which it counts too."""
    rng = np.random.default_rng(0)
    names = np.array(list("abcdefghij"))
    moa = names[np.arange(60) % 10]
    labels = np.where(np.arange(60) % 8 == 0, np.char.add(moa.astype(str), "|shared"), moa)
    centres = {name: rng.normal(size=30) for name in names}
    values = np.array([centres[m] + rng.normal(size=30) * 1.5 for m in moa])
    profiles = pd.DataFrame(values, columns=[f"f{i}" for i in range(30)]).assign(Metadata_MoA=labels)
    groups = {name: np.flatnonzero([name in value.split("|") for value in labels]) for name in ["shared", *names]}

    result = percent_matching(profiles, "Metadata_MoA", null_size=500, seed=SEED)
    percent, thresholds, medians = plain_percent(values, groups, 500, SEED)

    assert result.percent == pytest.approx(percent)
    assert result.thresholds == pytest.approx(thresholds)
    pd.testing.assert_series_equal(result.groups["median"], medians[result.groups.index], check_names=False)
    assert result.groups.loc["shared", "n"] == 8 and not result.groups.loc["shared", "above"]
    assert result.n_profiles == 60


def test_replicates_that_share_a_signal_score_above_shuffled_replicates():
    rng = np.random.default_rng(1)
    keys = np.repeat([f"p{i}" for i in range(30)], 4)
    values = np.repeat(rng.normal(size=(30, 50)), 4, axis=0) + rng.normal(size=(120, 50))
    profiles = pd.DataFrame(values).add_prefix("f").assign(Metadata_Perturbation=keys)

    planted = percent_replicating(profiles, "Metadata_Perturbation", null_size=1000)
    shuffled = percent_replicating(
        profiles.assign(Metadata_Perturbation=rng.permutation(keys)), "Metadata_Perturbation", null_size=1000
    )

    assert planted.percent == 100
    assert shuffled.percent < 20


def test_groups_larger_than_the_cap_use_the_capped_null():
    rng = np.random.default_rng(2)
    keys = np.array(["big"] * 40 + [f"p{i}" for i in range(40) for _ in range(2)])
    profiles = pd.DataFrame(rng.normal(size=(len(keys), 20))).add_prefix("f").assign(Metadata_key=keys)

    result = percent_replicating(profiles, "Metadata_key", null_size=200)

    assert sorted(result.thresholds) == [2, MAX_NULL_MEMBERS]
    assert result.groups.loc["big", "threshold"] == result.thresholds[MAX_NULL_MEMBERS]
    assert result.groups.loc["big", "n"] == 40


def test_groups_without_a_null_are_not_scored():
    """Two perturbations of three wells: no null of three wells from three other perturbations."""
    profiles = (
        pd.DataFrame(np.random.default_rng(3).normal(size=(6, 5))).add_prefix("f").assign(Metadata_key=list("aaabbb"))
    )

    result = percent_replicating(profiles, "Metadata_key", null_size=50)

    assert np.isnan(result.percent) and result.groups.empty and result.n_profiles == 0
