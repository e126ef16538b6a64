"""Per-field image-quality metrics, each a plain number per field.

Intensity statistics come from one 16-bit histogram per channel (exact,
and faster than sorting); focus is the power log-log slope (PLLS), the
measure CellProfiler's MeasureImageQuality and the JUMP QC use; nuclei are
estimated from an Otsu threshold of the DNA channel.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu

from workflow_scripts.qc.thresholds import QcThresholds

PERCENTILES = (1, 50, 99)
# PLLS is fitted between the lowest frequency and a quarter of the sampling
# rate: above that, camera noise, not focus, shapes the spectrum.
PLLS_MAX_CYCLES_PER_PIXEL = 0.25


def channel_metrics(channel: str, plane: np.ndarray, saturation_level: int) -> dict[str, float]:
    """min, percentiles, max, mean and saturated fraction of one uint16 plane."""
    counts = np.bincount(plane.ravel(), minlength=np.iinfo(np.uint16).max + 1)
    cumulative = np.cumsum(counts)
    values = np.flatnonzero(counts)
    metrics = {f"{channel}_min": float(values[0])}
    for q in PERCENTILES:
        # inverted-CDF percentile: the smallest value with at least q% of pixels at or below it
        metrics[f"{channel}_p{q:02d}"] = float(np.searchsorted(cumulative, q / 100 * plane.size))
    metrics[f"{channel}_max"] = float(values[-1])
    metrics[f"{channel}_mean"] = float(plane.mean(dtype=np.float64))
    metrics[f"{channel}_saturated_fraction"] = float(counts[saturation_level:].sum() / plane.size)
    return metrics


def power_log_log_slope(plane: np.ndarray) -> float:
    """Slope of log radial power against log frequency; more negative means blurrier.

    A Hann window stops the image's borders from adding a 1/f^2 spectrum of
    their own. NaN only for a constant plane, which has no spectrum (QC flags
    such fields as constant or zero-filled).
    """
    image = plane.astype(np.float64)
    if image.min() == image.max():
        return float("nan")
    height, width = image.shape
    image -= image.mean()
    image *= np.hanning(height)[:, None] * np.hanning(width)[None, :]
    power = np.abs(np.fft.rfft2(image)) ** 2
    side = min(height, width)
    radius = np.hypot(np.fft.fftfreq(height)[:, None], np.fft.rfftfreq(width)[None, :])
    ring = np.rint(radius * side).astype(np.int64).ravel()
    last = int(PLLS_MAX_CYCLES_PER_PIXEL * side)
    sums = np.bincount(ring, power.ravel(), minlength=last + 1)[1 : last + 1]
    counts = np.bincount(ring, minlength=last + 1)[1 : last + 1]
    frequencies = np.arange(1, last + 1)
    return float(np.polyfit(np.log(frequencies), np.log(sums / counts), 1)[0])


def nuclei_estimate(dna: np.ndarray, min_area: int) -> dict[str, float]:
    """DNA foreground fraction (Otsu) and the number of foreground objects of >= ``min_area`` px.

    Touching nuclei count as one, so this is a cell-count proxy for plate
    maps and outlier spotting, not a segmentation.
    """
    if dna.min() == dna.max():
        return {"dna_foreground_fraction": 0.0, "nuclei_count": 0.0}
    foreground = dna > threshold_otsu(dna)
    labels, _ = ndimage.label(foreground)
    areas = np.bincount(labels.ravel())[1:]
    return {"dna_foreground_fraction": float(foreground.mean()), "nuclei_count": float((areas >= min_area).sum())}


def field_metrics(pixels: np.ndarray, channels: Sequence[str], thresholds: QcThresholds) -> dict[str, float]:
    """Every metric of one (c, y, x) field, as a flat dict of floats."""
    planes = dict(zip(channels, pixels, strict=True))
    metrics: dict[str, float] = {}
    for channel, plane in planes.items():
        metrics.update(channel_metrics(channel, plane, thresholds.saturation_level))
    metrics["focus_plls"] = power_log_log_slope(planes[thresholds.focus_channel])
    metrics.update(nuclei_estimate(planes[thresholds.dna_channel], thresholds.min_nucleus_area))
    return metrics
