"""The synthetic Cell Painting generator: real-data calibration, planted biology, batch physics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import zarr
from scipy import ndimage as ndi

from workflow_scripts.demo.synth import (
    CAMERA_BASELINE_ADU,
    CHANNELS,
    PHENOTYPES,
    READ_NOISE_ADU,
    RESPONSE_REFERENCE_ADU,
    SHOT_NOISE_ADU_PER_ELECTRON,
    BatchEffect,
    Phenotype,
    camera_readout,
    illumination_function,
    intensity_response,
    render_site,
)
from workflow_scripts.demo.synth_cells import CellShape, draw_layout, paint_cells

DMSO = PHENOTYPES["DMSO"]
NO_BATCH = BatchEffect.none()
DMSO_SEEDS = (0, 1)
MOA_SEEDS = range(5)
MOA_SIZE = 540


@pytest.fixture(scope="module")
def dmso_fields() -> list[dict[str, np.ndarray]]:
    """Full-size DMSO fields without batch effects, rendered once for the module."""
    return [render_site(seed, DMSO, NO_BATCH) for seed in DMSO_SEEDS]


def _nuclei(dna: np.ndarray) -> tuple[np.ndarray, int]:
    """Nuclei by a fixed threshold at three times the background (5th percentile)."""
    mask = ndi.binary_fill_holes(dna > 3.0 * np.percentile(dna, 5))
    return ndi.label(mask)


def _background_noise(image: np.ndarray) -> float:
    """Robust sd of row second differences in the darkest decile: camera noise, not structure."""
    a = image.astype(np.float64)
    second = (a[:, 2:] - 2 * a[:, 1:-1] + a[:, :-2]) / np.sqrt(6.0)
    centre = a[:, 1:-1]
    dark = centre <= np.percentile(centre, 10)
    return float(1.4826 * np.median(np.abs(second[dark])))


def _field_stats(images: list[np.ndarray]) -> dict[str, float]:
    pixels = np.concatenate([i.ravel() for i in images])
    p5, p50, p99 = np.percentile(pixels, [5, 50, 99])
    return {
        "p5": p5,
        "p50": p50,
        "p99": p99,
        "saturated": float(np.mean(pixels == 65535)),
        "noise": float(np.mean([_background_noise(i) for i in images])),
    }


def _real_source4_field(fixtures: Path) -> dict[str, np.ndarray]:
    """Site 0 of jump-pixels (cpg0016 source_4, a Phenix 1080² field): the calibration target.

    Site 1 (source_13) comes from another microscope with ~10x dimmer
    exposure: the kind of difference ``BatchEffect.gain`` models, not the
    reference acquisition.
    """
    pixels = fixtures / "jump-pixels"
    names = pd.read_csv(pixels / "channels.csv").sort_values("idx")["channel"].tolist()
    images = zarr.open_array(pixels / "images.zarr", path="images", mode="r")[0]
    return dict(zip(names, images, strict=True))


@pytest.mark.parametrize("channel", CHANNELS)
def test_intensity_statistics_match_the_real_source4_field(shared_fixtures, dmso_fields, channel):
    real = _field_stats([_real_source4_field(shared_fixtures)[channel]])
    synthetic = _field_stats([field[channel] for field in dmso_fields])
    assert synthetic["p5"] == pytest.approx(real["p5"], rel=0.10), "background level"
    for key in ("p50", "p99", "noise"):
        ratio = synthetic[key] / real[key]
        assert 1 / 1.5 <= ratio <= 1.5, f"{channel} {key}: synthetic {synthetic[key]:.1f} vs real {real[key]:.1f}"
    if real["saturated"] > 0:
        assert real["saturated"] / 10 <= synthetic["saturated"] <= real["saturated"] * 10, channel
    else:
        assert synthetic["saturated"] <= 1e-4, channel


def test_dmso_field_has_a_realistic_cell_count_and_rare_saturation(dmso_fields):
    for field in dmso_fields:
        assert 50 <= _nuclei(field["DNA"])[1] <= 150
    rna = np.stack([field["RNA"] for field in dmso_fields])
    assert 0 < np.mean(rna == 65535) < 1e-3, "the brightest nucleoli saturate, as in the real RNA channel"


def test_render_returns_the_five_channels_as_uint16_images():
    images = render_site(3, DMSO, NO_BATCH, size=200)
    assert tuple(images) == CHANNELS
    for image in images.values():
        assert image.dtype == np.uint16 and image.shape == (200, 200)


def test_render_is_deterministic_in_the_seed():
    first, again, other = (render_site(seed, DMSO, NO_BATCH, size=256) for seed in (7, 7, 8))
    for channel in CHANNELS:
        np.testing.assert_array_equal(first[channel], again[channel])
        assert not np.array_equal(first[channel], other[channel])


def test_cell_count_scales_with_field_area_and_nuclei_never_overlap():
    dmso = CellShape(1.0, 1.0, 1.0, 1.0)
    full, quarter = ([draw_layout(np.random.default_rng(s), dmso, size).count for s in range(30)] for size in (1080, 540))
    assert 80 <= np.mean(full) <= 140
    assert np.mean(quarter) / np.mean(full) == pytest.approx(0.25, abs=0.04)
    # the largest nuclei of the planted phenotypes, at full density
    layout = draw_layout(np.random.default_rng(4), CellShape(1.35, 1.0, 1.0, 1.0), 540)
    label, maps = paint_cells(layout)
    _, nuclei = ndi.label(maps["nucleus"] > 0.3)
    assert nuclei == layout.count, "every nucleus stays a separate object"
    assert set(np.unique(label)) == set(range(layout.count + 1)), "every cell owns pixels"


def _moa_measures(phenotype: Phenotype) -> dict[str, float]:
    """Well-level readouts averaged over a few fields, as a profile would see them."""
    totals: dict[str, list[float]] = {k: [] for k in ("cells", "nucleus_area", "dna", "texture", "mito", "agp_fibre")}
    for seed in MOA_SEEDS:
        images = {c: i.astype(np.float64) for c, i in render_site(seed, phenotype, NO_BATCH, MOA_SIZE).items()}
        labels, count = _nuclei(images["DNA"])
        nuclear = labels > 0
        dna = images["DNA"]
        fine_dna = dna - ndi.gaussian_filter(dna, 2)
        agp = images["AGP"]
        cytoplasm = (agp > 2 * np.percentile(agp, 5)) & ~nuclear
        totals["cells"].append(count)
        totals["nucleus_area"].append(nuclear.sum() / count)
        totals["dna"].append(dna[nuclear].mean())
        totals["texture"].append(fine_dna[nuclear].std() / dna[nuclear].mean())
        totals["mito"].append(images["Mito"].mean() - np.percentile(images["Mito"], 5))
        totals["agp_fibre"].append((agp - ndi.gaussian_filter(agp, 3))[cytoplasm].std())
    return {key: float(np.mean(value)) for key, value in totals.items()}


@pytest.fixture(scope="module")
def dmso_measures() -> dict[str, float]:
    return _moa_measures(DMSO)


@pytest.mark.parametrize(
    ("moa", "expected"),
    [
        ("tubulin_destabilizer", {"nucleus_area": (1.3, None), "cells": (None, 0.8)}),
        ("dna_damage", {"nucleus_area": (None, 0.8), "dna": (1.3, None), "texture": (1.3, None)}),
        ("mito_uncoupler", {"mito": (None, 0.6)}),
        ("actin_disruptor", {"agp_fibre": (None, 0.75)}),
    ],
)
def test_each_moa_shifts_its_readouts_against_dmso(dmso_measures, moa, expected):
    measures = _moa_measures(PHENOTYPES[moa])
    for key, (at_least, at_most) in expected.items():
        ratio = measures[key] / dmso_measures[key]
        if at_least is not None:
            assert ratio >= at_least, f"{moa} {key}: {ratio:.2f}x DMSO"
        if at_most is not None:
            assert ratio <= at_most, f"{moa} {key}: {ratio:.2f}x DMSO"


def test_phenotype_table_has_neutral_dmso_and_four_distinct_moas():
    neutral = Phenotype("DMSO", "DMSO")
    assert PHENOTYPES["DMSO"] == neutral
    effects = {name: tuple(vars(p).values())[2:] for name, p in PHENOTYPES.items()}
    assert len(set(effects.values())) == len(PHENOTYPES) == 5
    assert all(name == p.name for name, p in PHENOTYPES.items())


def _signal(image: np.ndarray, offset: float = 0.0) -> np.ndarray:
    return image.astype(np.float64) - CAMERA_BASELINE_ADU - offset


def test_gain_scales_the_signal_of_the_channels_it_names():
    flat = render_site(5, DMSO, NO_BATCH, size=256)
    dimmer = render_site(5, DMSO, BatchEffect(gain=0.5), size=256)
    only_dna = render_site(5, DMSO, BatchEffect(gain={"DNA": 0.5}), size=256)
    for channel in CHANNELS:
        assert _signal(dimmer[channel]).mean() / _signal(flat[channel]).mean() == pytest.approx(0.5, rel=0.01)
    assert _signal(only_dna["DNA"]).mean() / _signal(flat["DNA"]).mean() == pytest.approx(0.5, rel=0.01)
    for channel in CHANNELS[1:]:
        np.testing.assert_array_equal(only_dna[channel], flat[channel])


def test_offset_adds_background_counts():
    flat = render_site(5, DMSO, NO_BATCH, size=256)
    shifted = render_site(5, DMSO, BatchEffect(offset={"ER": 300.0, "Mito": 120.0}), size=256)
    for channel, offset in {"DNA": 0.0, "AGP": 0.0, "RNA": 0.0, "ER": 300.0, "Mito": 120.0}.items():
        added = shifted[channel].astype(np.float64) - flat[channel]
        assert added.mean() == pytest.approx(offset, abs=0.5), channel


def test_intensity_response_is_a_power_law_that_keeps_the_reference_level():
    signal = np.array([0.0, 1000.0, RESPONSE_REFERENCE_ADU, 40000.0], np.float32)
    np.testing.assert_array_equal(intensity_response(signal, 1.0), signal)
    compressed = intensity_response(signal, 0.8)
    assert compressed[0] == 0 and compressed[2] == pytest.approx(RESPONSE_REFERENCE_ADU)
    assert compressed[1] > signal[1] and compressed[3] < signal[3], "dim raised, bright compressed"
    relative = signal[1:] / RESPONSE_REFERENCE_ADU
    np.testing.assert_allclose(intensity_response(signal, 1.2)[1:] / RESPONSE_REFERENCE_ADU, relative**1.2, rtol=1e-5)


def test_gamma_changes_bright_cells_and_dim_background_in_opposite_directions():
    flat = _signal(render_site(5, DMSO, NO_BATCH, size=256)["RNA"])
    bent = _signal(render_site(5, DMSO, BatchEffect(gamma=0.8), size=256)["RNA"])
    bright, dim = flat > 2 * RESPONSE_REFERENCE_ADU, flat < 0.1 * RESPONSE_REFERENCE_ADU
    assert np.median(bent[bright] / flat[bright]) < 0.9
    assert np.median(bent[dim] / flat[dim]) > 1.2


def test_blur_smooths_fine_structure_and_keeps_the_mean():
    sharp = _signal(render_site(5, DMSO, NO_BATCH, size=256)["DNA"])
    blurred = _signal(render_site(5, DMSO, BatchEffect(blur=1.5), size=256)["DNA"])
    assert blurred.mean() == pytest.approx(sharp.mean(), rel=0.01)
    fine = [np.abs(np.diff(image, 2, axis=1)).mean() for image in (sharp, blurred)]
    assert fine[1] < 0.6 * fine[0]


def test_stain_scales_the_cells_and_not_the_background():
    full = _signal(render_site(5, DMSO, NO_BATCH, size=256)["DNA"])
    half = _signal(render_site(5, DMSO, NO_BATCH, size=256, stain=0.5)["DNA"])
    assert np.percentile(half, 5) == pytest.approx(np.percentile(full, 5), rel=0.05)
    assert np.percentile(half, 99) / np.percentile(full, 99) == pytest.approx(0.5, abs=0.05)


def _corner_to_centre(image: np.ndarray, window: int = 48) -> float:
    size = image.shape[0]
    middle = slice(size // 2 - window // 2, size // 2 + window // 2)
    corners = [image[:window, :window], image[:window, -window:], image[-window:, :window], image[-window:, -window:]]
    return float(np.mean([c.mean() for c in corners]) / image[middle, middle].mean())


def test_vignetting_darkens_corners_and_the_illumination_function_divides_it_out():
    size = 384
    batch = BatchEffect(vignetting=0.4)
    flat = render_site(9, DMSO, NO_BATCH, size=size)
    vignetted = render_site(9, DMSO, batch, size=size)
    illum = illumination_function(batch, size)
    for channel in ("DNA", "ER", "Mito"):
        # the same cells under both illuminations: the ratio is the illumination profile
        relative = (_signal(vignetted[channel]) + 50.0) / (_signal(flat[channel]) + 50.0)
        assert _corner_to_centre(relative) == pytest.approx(_corner_to_centre(illum), abs=0.03)
        assert _corner_to_centre(relative) < 0.75
        corrected = (_signal(vignetted[channel]) / illum + 50.0) / (_signal(flat[channel]) + 50.0)
        assert _corner_to_centre(corrected) == pytest.approx(1.0, abs=0.03), channel


def test_illumination_function_is_mean_normalised_and_flat_without_vignetting():
    np.testing.assert_array_equal(illumination_function(NO_BATCH, 128), np.ones((128, 128), np.float32))
    illum = illumination_function(BatchEffect(vignetting=0.4), 256)
    assert illum.dtype == np.float32 and illum.shape == (256, 256)
    assert illum.mean() == pytest.approx(1.0, abs=1e-4)
    assert illum.min() / illum.max() == pytest.approx(0.6, abs=0.01)


def test_camera_readout_has_shot_and_read_noise_and_saturates_at_uint16_max():
    rng = np.random.default_rng(0)
    photons = np.full((512, 512), 4000.0, np.float32)
    image = camera_readout(photons, gain=2.0, offset=50.0, rng=rng).astype(np.float64)
    assert image.mean() == pytest.approx(8000 + CAMERA_BASELINE_ADU + 50, rel=0.002)
    expected_variance = SHOT_NOISE_ADU_PER_ELECTRON * 8000 + READ_NOISE_ADU**2
    assert image.var() == pytest.approx(expected_variance, rel=0.03)
    dark = camera_readout(np.zeros((512, 512), np.float32), 1.0, 0.0, rng).astype(np.float64)
    assert dark.std() == pytest.approx(READ_NOISE_ADU, rel=0.05)
    bright = camera_readout(np.full((8, 8), 70000.0, np.float32), 1.0, 0.0, rng)
    assert np.all(bright == 65535)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: BatchEffect(vignetting=1.0), "vignetting"),
        (lambda: BatchEffect(gain={"DAPI": 2.0}), "DAPI"),
        (lambda: BatchEffect(gain={"DNA": 0.0}), "gain for DNA"),
        (lambda: BatchEffect(offset=-5.0), "offset for DNA"),
        (lambda: BatchEffect(gamma=3.0), "gamma"),
        (lambda: BatchEffect(blur=-1.0), "blur"),
        (lambda: render_site(0, DMSO, NO_BATCH, size=64, stain=0.0), "stain"),
        (lambda: Phenotype("odd", "x", nucleus_scale=-1.0), "nucleus_scale"),
        (lambda: Phenotype("odd", "x", cell_density=0.0), "cell_density"),
        (lambda: render_site(0, DMSO, NO_BATCH, size=32), "size"),
    ],
)
def test_bad_parameters_are_rejected_with_a_clear_message(make, message):
    with pytest.raises(ValueError, match=message):
        make()
