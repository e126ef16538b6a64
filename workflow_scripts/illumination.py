"""Illumination functions: the gallery's ``{plate}_Illum{Ch}.npy``, or computed ones.

CellProfiler convention throughout: an illumination function is a float
(y, x) array per channel, at least 1 after rescaling, and
``corrected = raw / illum``. Plates without gallery files get one computed
the way CellProfiler's CorrectIlluminationCalculate does for JUMP ("Regular"
intensity, all fields of the plate, median-filter smoothing, rescaled by
the robust minimum), so every plate can be corrected the same way.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import dask.array as da
import numpy as np
from scipy import ndimage

from workflow_scripts.atomic import atomic_path, write_text_atomic
from workflow_scripts.errors import InputError

ROBUST_MINIMUM_PERCENTILE = 2.0
UINT16_MAX = np.iinfo(np.uint16).max


def illum_file_name(plate: str, channel: str) -> str:
    """The gallery's name for a plate's illumination function of one channel."""
    return f"{plate}_Illum{channel}.npy"


def load_illumination(paths: Mapping[str, Path], channels: Sequence[str], shape: tuple[int, int]) -> np.ndarray:
    """Stack the channels' ``.npy`` functions as (c, y, x) float32, checking each file.

    A wrong shape, a non-float array, NaN or a value <= 0 would silently
    corrupt every corrected pixel, so each is an error naming the file.
    """
    return np.stack([_checked_illum(Path(paths[ch]), shape) for ch in channels])


def _checked_illum(path: Path, shape: tuple[int, int]) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise InputError(f"illumination file {path} cannot be read: {error}") from None
    if array.shape != tuple(shape):
        raise InputError(f"illumination file {path} has shape {array.shape}, fields are {tuple(shape)}")
    if array.dtype.kind != "f":
        raise InputError(f"illumination file {path} has dtype {array.dtype}, expected float")
    if not np.isfinite(array).all() or (array <= 0).any():
        raise InputError(f"illumination file {path} has non-finite or non-positive values")
    return array.astype(np.float32)


def apply_illumination(pixels: np.ndarray, illum: np.ndarray) -> np.ndarray:
    """``raw / illum`` in float64, rounded back to uint16 (clipped at its range)."""
    corrected = np.rint(pixels / illum.astype(np.float64))
    return np.clip(corrected, 0, UINT16_MAX).astype(np.uint16)


def compute_illumination(
    fields: da.Array | Sequence[np.ndarray], shape: tuple[int, int], filter_size: float, workers: int = 1
) -> np.ndarray:
    """CellProfiler-style illumination functions (c, y, x) from a plate's fields.

    ``fields`` may be a reduced pyramid level: averaging commutes with block
    averaging, and the smoothing is far coarser than a pyramid step, so the
    function is computed small and interpolated to ``shape`` (full
    resolution). ``filter_size`` is the median filter's width in pixels of
    ``shape``. A lazy stack is averaged by ``workers`` threads, reading a few
    fields at a time.
    """
    if len(fields) == 0:
        raise InputError("no fields to compute an illumination function from")
    stack = fields if isinstance(fields, da.Array) else da.stack(list(fields))
    mean = stack.mean(axis=0, dtype=np.float64).compute(scheduler="threads", num_workers=workers)
    factor = shape[0] / mean.shape[1]
    size = max(1, round(filter_size / factor))
    smooth = np.stack([ndimage.median_filter(plane, size=size, mode="nearest") for plane in mean])
    full = np.stack([_resize(plane, shape) for plane in smooth])
    return np.stack([_rescale_robust_minimum(plane) for plane in full]).astype(np.float32)


def _resize(plane: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Linear interpolation with pixel areas aligned (grid mode), to exactly ``shape``."""
    zoom = (shape[0] / plane.shape[0], shape[1] / plane.shape[1])
    return ndimage.zoom(plane, zoom, order=1, mode="nearest", grid_mode=True)


def _rescale_robust_minimum(plane: np.ndarray) -> np.ndarray:
    """Clip below the 2nd percentile and divide by it, so the function is >= 1."""
    robust_minimum = np.percentile(plane, ROBUST_MINIMUM_PERCENTILE)
    if robust_minimum <= 0:
        raise InputError("illumination function has a robust minimum <= 0: the fields are blank")
    return np.maximum(plane, robust_minimum) / robust_minimum


def write_illumination(
    out_dir: str | Path, plate: str, channels: Sequence[str], illum: Sequence[np.ndarray], info: dict
) -> list[Path]:
    """Write ``{plate}_Illum{Ch}.npy`` per channel and ``illum.json`` (how they were made)."""
    out_dir = Path(out_dir)
    written = []
    for channel, plane in zip(channels, illum):
        target = out_dir / illum_file_name(plate, channel)
        with atomic_path(target) as tmp, open(tmp, "wb") as handle:
            np.save(handle, plane)
        written.append(target)
    write_text_atomic(json.dumps(info, indent=2, sort_keys=True), out_dir / "illum.json")
    return written
