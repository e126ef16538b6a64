"""``collection select`` on the collection of two plates made from the real plate
218360: the columns kept are pycytominer's feature_select's (and the
vectorized correlation_threshold excludes what pycytominer's does, with and
without NaN), no NaN reaches the output, DINO's default drops NaN features
only, clip bounds the values, and a locked run's features are kept exactly."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pycytominer
import pytest
from pycytominer.operations import correlation_threshold as pycytominer_correlation_threshold

from tests.support.settings import section
from tests.test_collection_collect import collect, plate_profiles  # noqa: F401 (session fixture)
from workflow_scripts.collection.__main__ import STAGE, main
from workflow_scripts.collection.correlation import correlation_threshold
from workflow_scripts.collection.select import select_features
from workflow_scripts.profiles.columns import feature_columns
from workflow_scripts.provenance import read_provenance


@pytest.fixture(scope="session")
def collection(plate_profiles, tmp_path_factory) -> Path:  # noqa: F811
    status, out = collect(tmp_path_factory.mktemp("collection"), plate_profiles)
    assert status == 0
    return out


def select(tmp_path: Path, profiles: Path, features: str = "cellprofiler", **settings) -> tuple[int, Path]:
    """``python -m workflow_scripts.collection select``; its exit status and output path."""
    out = tmp_path / "collection" / features / "selected.parquet"
    argv = [
        "select", "--settings", json.dumps(settings), "--wildcard", f"features={features}",
        "--input", f"profiles={profiles}", "--output", f"selected={out}",
    ]  # fmt: skip
    return main(argv), out


def subset(profiles: pd.DataFrame, n: int) -> pd.DataFrame:
    """The metadata and the first ``n`` features: pycytominer's correlation_threshold takes a minute for all."""
    return profiles[[c for c in profiles.columns if c.startswith("Metadata_")] + feature_columns(profiles)[:n]]


def test_default_cellprofiler_selection_keeps_pycytominers_columns(collection):
    profiles = subset(pd.read_parquet(collection), 600)
    settings = section("selection")["cellprofiler"]
    selected = select_features(profiles, settings, None)
    operations = ["frequency_threshold" if op == "variance_threshold" else op for op in settings["operations"]]
    reference = pycytominer.feature_select(
        profiles, features=feature_columns(profiles), operation=operations, na_cutoff=settings["na_cutoff"],
        freq_cut=settings["freq_cut"], unique_cut=settings["unique_cut"], corr_threshold=settings["corr_threshold"],
        corr_method=settings["corr_method"], outlier_cutoff=settings["outlier_cutoff"],
    )  # fmt: skip
    assert feature_columns(selected.table) == feature_columns(reference)
    assert not selected.table[feature_columns(selected.table)].isna().any().any()
    excluded = selected.report["excluded"]
    assert list(excluded) == settings["operations"] and len(excluded["drop_na_columns"]) > 0
    assert sum(map(len, excluded.values())) == 600 - len(feature_columns(reference))


@pytest.mark.parametrize("n_missing", [0, 40])
def test_vectorized_correlation_threshold_is_pycytominers(collection, n_missing):
    profiles = subset(pd.read_parquet(collection), 500)
    features = [f for f in feature_columns(profiles) if profiles[f].notna().all()][:400]
    if n_missing:  # the pandas path: pairwise-complete correlations
        profiles = profiles.copy()
        profiles.loc[profiles.index[:n_missing], features[::7]] = np.nan
    ours = correlation_threshold(profiles, features, 0.9, "pearson")
    assert sorted(ours) == sorted(pycytominer_correlation_threshold(profiles, features, threshold=0.9))
    assert len(ours) > 100


def test_stage_select_records_operations_and_plates(collection, tmp_path):
    status, out = select(
        tmp_path, collection, selection={"cellprofiler": {"operations": ["drop_na_columns", "drop_outliers"]}}
    )
    assert status == 0
    table = pd.read_parquet(out)
    record = read_provenance(out, STAGE)
    profiles = pd.read_parquet(collection)
    with_nan = [f for f in feature_columns(profiles) if profiles[f].isna().any()]  # no spread on either plate's DMSO
    assert record["plates"] == ["source_cellhealth/2020_06_26/218360", "source_cellhealth/2020_06_26/218361"]
    assert record["features_in"] == 3526 and record["features_out"] == len(feature_columns(table)) == 3526 - len(
        with_nan
    )
    assert record["excluded"]["drop_na_columns"] == with_nan and record["excluded"]["drop_outliers"] == []
    assert not table[feature_columns(table)].isna().any().any() and len(table) == 120


def test_dino_default_drops_only_features_with_nan(collection, tmp_path):
    profiles = pd.read_parquet(collection)
    features = feature_columns(profiles)[:384]
    dino = subset(profiles, 384).rename(columns={f: f"dino_{i:03d}" for i, f in enumerate(features)})
    dino.loc[3, "dino_005"] = np.inf
    dino.loc[7, [f"dino_{i:03d}" for i in range(384)]] = np.nan  # a well without an embedding
    selected = select_features(dino, section("selection")["dino"], None)
    nan_features = {f"dino_{i:03d}" for i, f in enumerate(features) if profiles[f].isna().any()} | {"dino_005"}
    assert set(selected.report["excluded"]) == {"drop_na_columns"}
    assert set(selected.report["excluded"]["drop_na_columns"]) == nan_features
    assert set(feature_columns(selected.table)) == set(feature_columns(dino)) - nan_features
    assert selected.report["wells_without_features"] == [
        "/".join(dino.loc[7, ["Metadata_Source", "Metadata_Batch", "Metadata_Plate", "Metadata_Well"]])
    ]
    assert selected.report["infinite_values"] == 1 and len(selected.table) == 119


def test_clip_bounds_values_after_the_column_operations(collection):
    profiles = subset(pd.read_parquet(collection), 300)
    settings = section("selection", cellprofiler={"operations": ["clip", "drop_na_columns"], "clip_value": 3})[
        "cellprofiler"
    ]
    selected = select_features(profiles, settings, None)
    values = selected.table[feature_columns(selected.table)].to_numpy()
    kept = profiles[feature_columns(selected.table)].to_numpy()
    assert np.abs(values).max() == 3 and selected.report["clipped_values"] == int((np.abs(kept) > 3).sum()) > 0


def test_remaining_nan_is_dropped_when_na_cutoff_allows_it(collection):
    profiles = subset(pd.read_parquet(collection), 200)
    settings = section("selection", cellprofiler={"operations": ["drop_na_columns"], "na_cutoff": 0.6})["cellprofiler"]
    selected = select_features(profiles, settings, None)
    half = [f for f in feature_columns(profiles) if 0 < profiles[f].isna().mean() <= 0.6]  # NaN on one plate of two
    assert half and selected.report["excluded"]["drop_remaining_na"] == half
    assert not selected.table[feature_columns(selected.table)].isna().any().any()


def test_locked_run_fixes_the_features(collection, tmp_path, caplog):
    settings = {"selection": {"cellprofiler": {"operations": ["drop_na_columns", "drop_outliers"]}}}
    status, first = select(tmp_path / "run1", collection, **settings)
    assert status == 0
    locked = tmp_path / "run1" / "collection"
    wanted = pd.read_parquet(first).columns[-50:]
    pd.read_parquet(first)[
        [c for c in pd.read_parquet(first).columns if c.startswith("Metadata_")] + list(wanted)
    ].to_parquet(locked / "cellprofiler" / "selected.parquet")
    status, second = select(tmp_path / "run2", collection, correction={"locked": str(locked)}, **settings)
    assert status == 0
    assert feature_columns(pd.read_parquet(second)) == list(wanted)
    assert read_provenance(second, STAGE)["locked"] == str(locked / "cellprofiler" / "selected.parquet")

    profiles = pd.read_parquet(collection)
    smaller = tmp_path / "smaller.parquet"
    profiles.drop(columns=[wanted[3]]).to_parquet(smaller)
    with caplog.at_level(logging.ERROR, logger="workflow_scripts.collection"):
        status, third = select(tmp_path / "run3", smaller, correction={"locked": str(locked)}, **settings)
    assert status == 1 and not third.exists()
    [message] = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert (
        message.startswith(f"{locked / 'cellprofiler' / 'selected.parquet'}: 1 locked feature(s) absent")
        and wanted[3] in message
    )
