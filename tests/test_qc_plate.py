"""QC of a converted plate: the planted bad fields are flagged, no good one is."""

from __future__ import annotations

import dataclasses
import json

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from tests.support.sample_plate import real_fields, sample_fields, textured_field, write_fetched_plate
from tests.support.settings import QC_DEFAULTS, conversion_options, qc_thresholds
from workflow_scripts.illumination import illum_file_name
from workflow_scripts.omezarr.writer import convert_plate
from workflow_scripts.qc.__main__ import main as qc_main
from workflow_scripts.qc.heatmaps import HEATMAPS, plate_shape, well_grid
from workflow_scripts.qc.plate_qc import run_plate_qc

CHANNELS = ["DNA", "AGP", "RNA", "ER", "Mito"]
WELLS = ["A01", "A02", "B01", "B02", "P24"]
SITES = ["1", "2", "3"]
SHAPE = (256, 256)
# (well, site) -> reason QC must give
PLANTED = {
    ("A01", "2"): "zero-filled",
    ("A02", "3"): "out of focus",
    ("B01", "1"): "saturated",
    ("B02", "2"): "unreadable",
}


@pytest.fixture(scope="module")
def real(shared_fixtures):
    return real_fields(shared_fixtures / "jump-pixels", CHANNELS)[0]


@pytest.fixture(scope="module")
def plate_dir(real, tmp_path_factory):
    """A converted plate with one zero-filled, blurred, saturated and truncated field."""
    root = tmp_path_factory.mktemp("plate")
    fields = sample_fields(real, WELLS, SITES, SHAPE)
    fields[("A01", "2")][CHANNELS.index("Mito")] = 0
    blurred_source = ndimage.gaussian_filter(real.astype(np.float64), (0, 2, 2))
    fields[("A02", "3")] = textured_field(np.random.default_rng(7), blurred_source, SHAPE)
    fields[("B01", "1")][CHANNELS.index("RNA"), :40] = 65535  # 15 % of the plane
    fetched = write_fetched_plate(root, fields, CHANNELS, plate="BR01")
    truncated = fetched.tiff("B02", "2", "ER")
    truncated.write_bytes(truncated.read_bytes()[:3000])
    convert_plate(fetched.load_data, fetched.cache_dir, root / "BR01.ome.zarr", CHANNELS, conversion_options())
    return root


@pytest.fixture(scope="module")
def qc(plate_dir):
    code = qc_main([
        "--input", f"plate={plate_dir / 'BR01.ome.zarr'}",
        "--output", f"fields={plate_dir / 'qc' / 'fields.parquet'}",
        "--threads", "2",
    ])
    assert code == 0
    return pd.read_parquet(plate_dir / "qc" / "fields.parquet")


def test_planted_fields_and_only_they_are_flagged(qc):
    flagged = {(row.Metadata_Well, row.Metadata_Site): row.qc_reason for row in qc.itertuples() if not row.qc_pass}
    assert flagged == {key: reason for key, reason in PLANTED.items()}
    details = dict(zip(zip(qc["Metadata_Well"], qc["Metadata_Site"]), qc["qc_detail"]))
    assert details[("A01", "2")] == "zero-filled: Mito"
    assert details[("B01", "1")].startswith("saturated: RNA 15.")
    assert "ER:" in details[("B02", "2")]
    assert (qc.loc[qc["qc_pass"], "qc_reason"] == "").all()


def test_fields_table_follows_the_contract(qc):
    assert len(qc) == len(WELLS) * len(SITES)
    assert qc[["Metadata_Source", "Metadata_Batch", "Metadata_Plate"]].drop_duplicates().values.tolist() == [
        ["source_4", "BATCH1", "BR01"]
    ]
    for column in [
        "Metadata_Source",
        "Metadata_Batch",
        "Metadata_Plate",
        "Metadata_Well",
        "Metadata_Site",
        "qc_reason",
    ]:
        assert pd.api.types.is_string_dtype(qc[column]), column
    assert qc["Metadata_Field"].dtype == np.int64 and qc["qc_pass"].dtype == bool
    assert qc.groupby("Metadata_Well")["Metadata_Field"].apply(list).tolist() == [[0, 1, 2]] * len(WELLS)
    metrics = ["focus_plls", "nuclei_count", "dna_foreground_fraction"] + [
        f"{ch}_{name}" for ch in CHANNELS for name in ("p01", "p50", "p99", "saturated_fraction")
    ]
    assert all(qc[column].dtype == np.float64 for column in metrics)
    readable = qc["conversion_reason"] == ""
    assert qc.loc[readable, metrics].notna().all().all(), "no NaN metric for a readable field"
    assert qc.loc[~readable, metrics].isna().all().all(), "unreadable fields have no metrics"
    assert (qc.loc[qc["qc_pass"], "nuclei_count"] > 0).all()


def test_flagged_fields_are_marked_for_exclusion_and_counted(qc, plate_dir):
    assert (qc["qc_excluded"] == ~qc["qc_pass"]).all()
    assert qc["qc_excluded"].sum() == len(PLANTED)
    kept = run_plate_qc(plate_dir / "BR01.ome.zarr", plate_dir / "qc-keep", qc_thresholds(), exclude_flagged=False, illum_filter_size=QC_DEFAULTS["illum_filter_size"])
    assert not kept["qc_excluded"].any() and (~kept["qc_pass"]).sum() == len(PLANTED)


def test_heatmaps_are_written_as_pngs(qc, plate_dir):
    for name in HEATMAPS:
        image = matplotlib.image.imread(plate_dir / "qc" / "heatmaps" / f"heatmap_{name}.png")
        assert image.ndim == 3 and image.shape[0] > 100
    assert not list((plate_dir / "qc").glob("*.tmp"))


def test_wells_are_placed_as_on_the_plate():
    assert plate_shape(["A01", "H12"]) == (8, 12)
    assert plate_shape(["A01", "P24"]) == (16, 24)
    grid = well_grid(pd.Series({"A01": 1.0, "B03": 2.0, "P24": 3.0}), (16, 24))
    assert (grid[0, 0], grid[1, 2], grid[15, 23]) == (1.0, 2.0, 3.0)
    assert np.isnan(grid).sum() == 16 * 24 - 3


def test_illumination_computed_from_passing_fields_when_the_plate_has_none(qc, plate_dir):
    info = json.loads((plate_dir / "qc" / "illum" / "illum.json").read_text())
    assert info["source"] == "computed" and info["fields"] == int(qc["qc_pass"].sum())
    for channel in CHANNELS:
        illum = np.load(plate_dir / "qc" / "illum" / illum_file_name("BR01", channel))
        assert illum.shape == SHAPE and illum.dtype == np.float32
        assert illum.min() == pytest.approx(1.0) and np.isfinite(illum).all()


def test_gallery_illumination_is_passed_on(real, tmp_path):
    gallery = np.random.default_rng(2).uniform(1, 2, (len(CHANNELS), 64, 64)).astype(np.float32)
    fetched = write_fetched_plate(tmp_path, sample_fields(real, ["C03"], SITES, (64, 64)), CHANNELS, illum=gallery)
    convert_plate(fetched.load_data, fetched.cache_dir, tmp_path / "p.ome.zarr", CHANNELS, conversion_options())
    run_plate_qc(tmp_path / "p.ome.zarr", tmp_path / "qc", qc_thresholds(), **QC_DEFAULTS)
    info = json.loads((tmp_path / "qc" / "illum" / "illum.json").read_text())
    assert info["source"] == "gallery" and info["files"]["DNA"].endswith("PLATE1_IllumDNA.npy")
    for c, channel in enumerate(CHANNELS):
        np.testing.assert_array_equal(np.load(tmp_path / "qc" / "illum" / f"PLATE1_Illum{channel}.npy"), gallery[c])


def test_plate_where_every_field_fails_qc_is_an_error_naming_it(real, tmp_path):
    fields = sample_fields(real, ["A01"], SITES, (64, 64))
    for pixels in fields.values():
        pixels[CHANNELS.index("AGP")] = 0
    fetched = write_fetched_plate(tmp_path, fields, CHANNELS, plate="BR77")
    convert_plate(fetched.load_data, fetched.cache_dir, tmp_path / "p.ome.zarr", CHANNELS, conversion_options())
    with pytest.raises(ValueError, match=r"plate BR77: every one of its 3 fields fails QC: \{'zero-filled': 3\}"):
        run_plate_qc(tmp_path / "p.ome.zarr", tmp_path / "qc", qc_thresholds(), **QC_DEFAULTS)
    assert not (tmp_path / "qc" / "fields.parquet").exists()


def test_unknown_focus_channel_is_an_error(plate_dir):
    with pytest.raises(ValueError, match=r"plate BR01: focus channel 'Hoechst' is not among"):
        run_plate_qc(plate_dir / "BR01.ome.zarr", plate_dir / "qc-bad", qc_thresholds(focus_channel="Hoechst"), **QC_DEFAULTS)


def test_impossible_thresholds_are_refused():
    with pytest.raises(ValueError, match="max_saturated_fraction must be in"):
        dataclasses.replace(qc_thresholds(), max_saturated_fraction=1.5)
    with pytest.raises(ValueError, match="focus_tolerance must be > 0"):
        dataclasses.replace(qc_thresholds(), focus_tolerance=0)
    with pytest.raises(ValueError, match="config key qc.max_saturated_fraction"):
        qc_thresholds(max_saturated_fraction=1.5)
