"""Per-field QC metrics against numpy/skimage references and known images."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from skimage.draw import disk
from skimage.filters import threshold_otsu

from tests.support.sample_plate import real_fields
from workflow_scripts.qc.metrics import PERCENTILES, channel_metrics, nuclei_estimate, power_log_log_slope

CHANNELS = ["DNA", "AGP", "RNA", "ER", "Mito"]


def _power_law_image(alpha: float, size: int = 512, seed: int = 0) -> np.ndarray:
    """Gaussian noise whose power spectrum falls as frequency**-alpha."""
    rng = np.random.default_rng(seed)
    frequency = np.hypot(np.fft.fftfreq(size)[:, None], np.fft.fftfreq(size)[None, :])
    frequency[0, 0] = 1.0
    return np.real(np.fft.ifft2(np.fft.fft2(rng.normal(size=(size, size))) * frequency ** (-alpha / 2)))


def test_channel_metrics_match_numpy():
    rng = np.random.default_rng(0)
    plane = rng.gamma(2.0, 3000.0, size=(300, 200)).clip(0, 65535).astype(np.uint16)
    plane[:10, :10] = 65535
    metrics = channel_metrics("RNA", plane, saturation_level=60000)
    for q in PERCENTILES:
        assert metrics[f"RNA_p{q:02d}"] == np.percentile(plane, q, method="inverted_cdf")
    assert metrics["RNA_min"] == plane.min() and metrics["RNA_max"] == plane.max()
    assert metrics["RNA_mean"] == pytest.approx(plane.mean())
    assert metrics["RNA_saturated_fraction"] == pytest.approx((plane >= 60000).mean())
    assert all(isinstance(value, float) for value in metrics.values())


@pytest.mark.parametrize("alpha", [1.0, 2.0, 3.0])
def test_power_log_log_slope_recovers_a_known_spectrum(alpha):
    assert power_log_log_slope(_power_law_image(alpha)) == pytest.approx(-alpha, abs=0.15)


def test_blur_steepens_the_slope_of_a_real_field(shared_fixtures):
    dna = real_fields(shared_fixtures / "jump-pixels", CHANNELS)[0, 0].astype(np.float64)
    rng = np.random.default_rng(0)
    sharp = power_log_log_slope(rng.poisson(dna))
    for sigma in (1.5, 3.0):
        blurred = power_log_log_slope(rng.poisson(ndimage.gaussian_filter(dna, sigma)))  # noise after the optics
        assert blurred < sharp - 1.0


def test_constant_plane_has_no_slope():
    assert np.isnan(power_log_log_slope(np.full((64, 64), 7, np.uint16)))


def test_nuclei_estimate_counts_objects_above_the_minimum_area():
    image = np.full((200, 200), 300, np.uint16)
    centres = [(20 + 40 * i, 20 + 40 * j) for i in range(4) for j in range(3)]
    for centre in centres:
        image[disk(centre, 9, shape=image.shape)] = 5000  # ~250 px each
    for y, x in [(10, 190), (60, 185), (110, 190), (190, 150), (150, 190)]:
        image[y : y + 3, x : x + 3] = 5000  # 9 px specks: debris, not nuclei
    estimate = nuclei_estimate(image, min_area=80)
    assert estimate["nuclei_count"] == len(centres)
    assert estimate["dna_foreground_fraction"] == pytest.approx((image > threshold_otsu(image)).mean())
    assert nuclei_estimate(image, min_area=5)["nuclei_count"] == len(centres) + 5


def test_blank_dna_has_no_nuclei():
    assert nuclei_estimate(np.zeros((32, 32), np.uint16), 10) == {"dna_foreground_fraction": 0.0, "nuclei_count": 0.0}
