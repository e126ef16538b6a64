"""Illumination functions: checked on load, applied as raw / illum, computed CellProfiler-style."""

from __future__ import annotations

import json
import logging
import re

import numpy as np
import pytest
import tifffile
from scipy import ndimage

from tests.support.sample_plate import real_fields, sample_fields, write_fetched_plate
from tests.support.settings import conversion_options
from workflow_scripts.illumination import (
    apply_illumination,
    compute_illumination,
    illum_file_name,
    load_illumination,
    write_illumination,
)
from workflow_scripts.omezarr.reader import open_plate
from workflow_scripts.omezarr.writer import convert_plate

CHANNELS = ["DNA", "AGP", "RNA", "ER", "Mito"]
SHAPE = (120, 160)


@pytest.fixture(scope="module")
def real(shared_fixtures):
    return real_fields(shared_fixtures / "jump-pixels", CHANNELS)[0]


def _vignetting(shape: tuple[int, int]) -> np.ndarray:
    """A smooth bright-centre pattern, 1.0 at the corners and 1.6 at the centre."""
    y, x = np.meshgrid(np.linspace(-1, 1, shape[0]), np.linspace(-1, 1, shape[1]), indexing="ij")
    return 1.0 + 0.6 * (1 - (x**2 + y**2) / 2)


@pytest.mark.parametrize(
    "array, message",
    [
        (np.ones((4, 4), np.float32), "has shape (4, 4)"),
        (np.ones(SHAPE, np.int32), "has dtype int32"),
        (np.full(SHAPE, np.nan, np.float32), "non-finite or non-positive"),
        (np.zeros(SHAPE, np.float64), "non-finite or non-positive"),
    ],
)
def test_bad_illumination_file_is_an_error_naming_it(tmp_path, array, message):
    path = tmp_path / "P_IllumDNA.npy"
    np.save(path, array)
    with pytest.raises(ValueError, match=f"{re.escape(str(path))}.*{re.escape(message)}"):
        load_illumination({"DNA": path}, ["DNA"], SHAPE)
    path.write_bytes(b"not a numpy file")
    with pytest.raises(ValueError, match=f"illumination file {re.escape(str(path))} cannot be read"):
        load_illumination({"DNA": path}, ["DNA"], SHAPE)


def test_apply_divides_rounds_and_clips():
    raw = np.array([[[0, 1, 3, 5, 40000, 65535]]], np.uint16)
    halved = apply_illumination(raw, np.full(raw.shape, 2.0, np.float32))
    assert halved.dtype == np.uint16
    assert halved.tolist() == [[[0, 0, 2, 2, 20000, 32768]]]  # round half to even, as np.rint
    doubled = apply_illumination(raw, np.full(raw.shape, 0.5, np.float32))
    assert doubled.tolist() == [[[0, 2, 6, 10, 65535, 65535]]]


def _cells(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """(2, y, x) fields of randomly placed blurred spots on a flat background."""
    spots = (rng.random((2, *shape)) < 0.01).astype(np.float64)
    return 400.0 + 6e4 * ndimage.gaussian_filter(spots, (0, 4, 4))


def _block_mean(field: np.ndarray, factor: int) -> np.ndarray:
    c, h, w = field.shape
    return field.reshape(c, h // factor, factor, w // factor, factor).mean(axis=(2, 4))


def test_computed_function_recovers_the_vignetting_and_is_at_least_one():
    shape = (256, 256)
    rng = np.random.default_rng(0)
    fields = [_block_mean(_cells(rng, shape) * _vignetting(shape), 4) for _ in range(80)]
    illum = compute_illumination(fields, shape, filter_size=48)
    assert illum.shape == (2, *shape) and illum.dtype == np.float32
    for plane in illum:
        assert plane.min() == pytest.approx(1.0)
        assert np.percentile(plane, 2) == pytest.approx(1.0, rel=1e-3)
        ratio = (plane / _vignetting(shape))[32:-32, 32:-32]  # away from the borders
        assert ratio.std() / ratio.mean() < 0.03, "the function has the shape of the vignetting"


def test_computed_from_a_reduced_level_matches_full_resolution():
    shape = (128, 128)
    rng = np.random.default_rng(1)
    fields = [_cells(rng, shape) * _vignetting(shape) for _ in range(60)]
    full = compute_illumination(fields, shape, filter_size=32)
    reduced = compute_illumination([_block_mean(f, 4) for f in fields], shape, filter_size=32)
    assert np.abs(reduced / full - 1)[:, 16:-16, 16:-16].max() < 0.05


def test_no_fields_is_an_error():
    with pytest.raises(ValueError, match="no fields"):
        compute_illumination([], SHAPE, filter_size=10)


def test_written_files_use_the_gallery_names(tmp_path):
    illum = np.random.default_rng(0).uniform(1, 2, (2, *SHAPE)).astype(np.float32)
    paths = write_illumination(tmp_path, "BR1", ["DNA", "Mito"], illum, {"source": "computed"})
    assert [p.name for p in paths] == [illum_file_name("BR1", "DNA"), "BR1_IllumMito.npy"]
    np.testing.assert_array_equal(np.load(tmp_path / "BR1_IllumMito.npy"), illum[1])
    assert json.loads((tmp_path / "illum.json").read_text()) == {"source": "computed"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["BR1_IllumDNA.npy", "BR1_IllumMito.npy", "illum.json"]


def test_conversion_applies_illumination_when_asked(real, tmp_path):
    illum = np.random.default_rng(1).uniform(1.0, 3.0, (len(CHANNELS), *SHAPE)).astype(np.float32)
    plate = write_fetched_plate(tmp_path, sample_fields(real, ["A01", "B02"], ["1"], SHAPE), CHANNELS, illum=illum)
    options = conversion_options(apply_illumination=True)
    reader = open_plate(
        convert_plate(plate.load_data, plate.cache_dir, tmp_path / "p.ome.zarr", CHANNELS, options).output
    )
    raw = np.stack([tifffile.imread(plate.tiff("B02", "1", ch)) for ch in CHANNELS])
    expected = np.clip(np.rint(raw / illum.astype(np.float64)), 0, 65535)
    np.testing.assert_array_equal(reader.read_field("B02", 0), expected)
    assert reader.provenance["illumination"]["applied"] is True
    assert reader.provenance["conversion"]["apply_illumination"] is True


def test_apply_without_illumination_files_is_an_error_naming_the_plate(real, tmp_path):
    plate = write_fetched_plate(tmp_path, sample_fields(real, ["A01"], ["1"], SHAPE), CHANNELS, plate="BR9")
    with pytest.raises(ValueError, match="plate BR9: apply_illumination is set but load_data has no URL_Illum"):
        convert_plate(
            plate.load_data,
            plate.cache_dir,
            tmp_path / "p.ome.zarr",
            CHANNELS,
            conversion_options(apply_illumination=True),
        )


def test_unusable_gallery_files_are_left_out_with_a_warning(real, tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    illum = np.ones((len(CHANNELS), 8, 8), np.float32)  # wrong shape for these fields
    plate = write_fetched_plate(tmp_path, sample_fields(real, ["A01"], ["1"], SHAPE), CHANNELS, illum=illum)
    reader = open_plate(
        convert_plate(plate.load_data, plate.cache_dir, tmp_path / "p.ome.zarr", CHANNELS, conversion_options()).output
    )
    assert reader.illumination() is None
    assert reader.provenance["illumination"]["stored"] is False
    assert any("gallery illumination not kept" in m and "has shape (8, 8)" in m for m in caplog.messages)
