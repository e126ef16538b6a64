"""Per-plate normalization of the real plate 218360 (../shared/fixtures) against
its 15 DMSO wells, checked against pycytominer.normalize: equal to 1e-9 on
every feature with spread on the controls; the others (124 of 3,526 with zero
MAD) NaN and listed. Also the samples rule, rank_int, wellpos and cc."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pycytominer
import pytest
from scipy import stats

from tests.support.settings import section
from workflow_scripts.errors import InputError
from workflow_scripts.fetch.platemap import platemap_wells, read_text_table
from workflow_scripts.profiles.columns import feature_columns
from workflow_scripts.profiles.normalize import normalize_plate, regress_cell_count

PLATE = "profiles/plate-218360"
LINCS_PLATE = "profiles/lincs-SQ00015054/SQ00015054_normalized_feature_select.csv.gz"
DMSO = "0.1% DMSO"
SOURCE, BATCH = "source_cellhealth", "2020_06_26"


@cache
def augmented(fixtures: Path) -> pd.DataFrame:
    """The annotated plate as its authors wrote it (pycytominer's input)."""
    table = pd.read_csv(fixtures / PLATE / "218360_augmented.csv.gz", dtype=str)
    features = feature_columns(table)
    return pd.concat([table.drop(columns=features), table[features].astype(np.float64)], axis=1).copy()


@cache
def plate_wells(fixtures: Path) -> pd.DataFrame:
    """The plate as ``cellprofiler/wells.parquet`` holds it: keys as text, the cell count, the features."""
    table = pd.read_csv(fixtures / PLATE / "218360.csv.gz", dtype={"Metadata_Plate": str, "Metadata_Well": str})
    keys = pd.DataFrame({"Metadata_Source": SOURCE, "Metadata_Batch": BATCH}, index=table.index, dtype="string")
    return pd.concat([keys, table], axis=1).copy()


@cache
def plate_map(fixtures: Path) -> pd.DataFrame:
    """The plate's platemap as the fetch stage writes it, from the fixture's well table."""
    layout = read_text_table(fixtures / PLATE / "cell_counts.tsv", "cell_counts.tsv")
    return platemap_wells(layout.drop(columns=["Metadata_Plate", "Metadata_Well", "cell_count"]), "218360 platemap")


def with_controls(table: pd.DataFrame) -> pd.DataFrame:
    """The plate with ``Metadata_PertType`` from its treatment column."""
    return table.assign(Metadata_PertType=np.where(table["Metadata_treatment"] == DMSO, "negcon", "trt"))


def pycytominer_normalized(fixtures: Path, method: str, samples: str, features: list[str]) -> pd.DataFrame:
    table = augmented(fixtures)
    meta = [c for c in table.columns if c.startswith("Metadata_")]
    return pycytominer.normalize(
        table[meta + features], features=features, meta_features=meta, samples=samples, method=method
    )


def assert_matches(ours: np.ndarray, reference: pd.DataFrame, features: list[str], flat: list[str]) -> None:
    """Equal to 1e-9 (relative to max(1, |value|)) where we have spread; NaN exactly on the listed features."""
    expected = reference[features].to_numpy(np.float64)
    has_spread = ~np.isin(features, flat)
    assert np.isnan(ours[:, ~has_spread]).all() and not np.isnan(ours[:, has_spread]).any()
    error = np.abs(ours[:, has_spread] - expected[:, has_spread]) / np.maximum(1, np.abs(expected[:, has_spread]))
    assert error.max() <= 1e-9


# Every feature for the default method; pycytominer takes seconds per thousand features, so 800 for the others.
@pytest.mark.parametrize(("method", "n_features"), [("mad_robustize", None), ("standardize", 800), ("robustize", 800)])
def test_equals_pycytominer_against_dmso(shared_fixtures, method, n_features):
    table = with_controls(augmented(shared_fixtures))
    features = feature_columns(table)[:n_features]
    result = normalize_plate(table, features, section("normalization", method=method), "218360")
    reference = pycytominer_normalized(shared_fixtures, method, f"Metadata_treatment == '{DMSO}'", features)
    flat = result.report["no_spread_features"]
    assert_matches(result.values, reference, features, flat)
    assert result.report["reference_wells"] == 15
    if method == "mad_robustize":
        dmso = table.loc[table["Metadata_treatment"] == DMSO, features]
        zero_mad = [f for f, mad in zip(features, stats.median_abs_deviation(dmso, axis=0)) if mad == 0]
        assert len(features) == 3526 and flat == zero_mad and len(flat) == 124
        assert np.abs(reference[flat].to_numpy()).max() > 1e15  # what pycytominer makes of them


def test_samples_all_and_a_plate_without_negative_controls(shared_fixtures):
    table = augmented(shared_fixtures).assign(Metadata_PertType="trt")
    features = feature_columns(table)[:800]
    with pytest.raises(InputError, match="plate 218360: no negative control wells"):
        normalize_plate(table, features, section("normalization"), "218360")
    result = normalize_plate(table, features, section("normalization", samples="all"), "218360")
    assert_matches(
        result.values,
        pycytominer_normalized(shared_fixtures, "mad_robustize", "all", features),
        features,
        result.report["no_spread_features"],
    )
    assert result.report["reference_wells"] == 60


def test_features_missing_in_some_wells_are_recorded(shared_fixtures, caplog):
    """A feature measured in most wells but not all stays NaN where it is missing, and is named with its count."""
    table = with_controls(augmented(shared_fixtures))
    features = feature_columns(table)[:200]
    treated = table.index[table["Metadata_PertType"] == "trt"][:2]
    table.loc[treated, features[7]] = np.nan
    result = normalize_plate(table, features, section("normalization"), "218360")
    assert result.report["nan_features"] == {features[7]: 2}
    assert np.isnan(result.values[:, 7]).sum() == 2 and f"{features[7]} (2 wells)" in caplog.text


def test_a_plate_where_nothing_varies_is_refused(shared_fixtures):
    table = with_controls(augmented(shared_fixtures)).head(20)
    table = table.assign(Metadata_PertType=["negcon"] + ["trt"] * 19)  # one control well: no spread anywhere
    with pytest.raises(InputError, match="plate 218360: no feature varies across its 1 reference wells"):
        normalize_plate(table, feature_columns(table), section("normalization"), "218360")


def test_rank_int_gives_blom_normal_scores_of_the_robustized_plate(shared_fixtures):
    table = with_controls(augmented(shared_fixtures))
    features = feature_columns(table)
    robust = normalize_plate(table, features, section("normalization"), "218360")
    ranked = normalize_plate(table, features, section("normalization", rank_int=True), "218360")
    kept = ~np.isnan(robust.values).any(axis=0)
    ranks = pd.DataFrame(robust.values[:, kept]).rank(method="average").to_numpy()
    expected = stats.norm.ppf((ranks - 3 / 8) / (60 + 1 / 4))
    assert np.allclose(ranked.values[:, kept], expected, atol=1e-12)
    assert np.isnan(ranked.values[:, ~kept]).all()


def test_wellpos_subtracts_the_batch_mean_of_each_well_position(shared_fixtures):
    wells = with_controls(augmented(shared_fixtures))
    features = feature_columns(wells)
    values = wells[features].to_numpy()
    keys = wells[["Metadata_Plate", "Metadata_Well"]]
    other = pd.concat(
        [keys.assign(Metadata_Plate="218361"), pd.DataFrame(values[::-1] * 1.5, columns=features)], axis=1
    )
    batch = pd.concat([wells[["Metadata_Plate", "Metadata_Well", *features]], other], ignore_index=True)
    settings = section("normalization", adjust=["wellpos"], samples="all", method="standardize")
    adjusted = normalize_plate(wells, features, settings, "218360", batch)
    by_hand = pd.concat([keys, pd.DataFrame(values - (values + values[::-1] * 1.5) / 2, columns=features)], axis=1)
    plain = normalize_plate(by_hand, features, section("normalization", samples="all", method="standardize"), "218360")
    assert np.allclose(adjusted.values, plain.values, equal_nan=True, atol=1e-9)
    assert adjusted.report["wellpos"] == {"plates": ["218360", "218361"], "wells": 120}
    with pytest.raises(InputError, match="no batch wells"):
        normalize_plate(wells, features, settings, "218360")


def test_cc_regresses_the_cell_count_out(shared_fixtures):
    wells = plate_wells(shared_fixtures)
    features = feature_columns(wells)
    values = wells[features].to_numpy(np.float64)
    count = wells["Metadata_Object_Count"].to_numpy(np.float64)
    adjusted, report = regress_cell_count(values, wells["Metadata_Object_Count"], "218360", min_unique=10)
    unique = wells[features].nunique().to_numpy()
    assert report["features_regressed"] == (unique > 10).sum() > 3000
    assert np.array_equal(adjusted[:, unique <= 10], values[:, unique <= 10], equal_nan=True)
    for j in np.flatnonzero(unique > 10)[:50]:
        slope, intercept = np.polyfit(count, values[:, j], 1)
        assert np.allclose(
            adjusted[:, j], values[:, j] - (intercept + slope * count), atol=1e-9 * max(1, np.abs(values[:, j]).max())
        )

    dino_like = wells.drop(columns=["Metadata_Object_Count"])
    skipped = normalize_plate(
        with_controls(dino_like.assign(Metadata_treatment=augmented(shared_fixtures)["Metadata_treatment"])),
        features,
        section("normalization", adjust=["cc"]),
        "218360",
    )
    assert "no Metadata_Object_Count" in skipped.report["cc"]["skipped"] and "DINO" in skipped.report["cc"]["skipped"]
