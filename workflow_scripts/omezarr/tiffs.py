"""Reading a field's channel TIFFs, turning every way they can be bad into a reason.

The gallery holds corrupt, truncated and zero-filled TIFFs, and a fetch with
``allow_missing`` can leave files out. One bad file must not stop a plate,
nor cost the other channels of its field: ``read_field`` returns the
readable channels, zeros for the others, and each failed channel with a
reason the QC stage reports ('missing file', 'unreadable', 'shape
mismatch', 'dtype mismatch'). Zero-filled files read fine here; QC flags
them from their pixels.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

from workflow_scripts.errors import InputError
from workflow_scripts.omezarr.plate_sources import FieldSource

PIXEL_DTYPE = np.dtype("uint16")
PROBE_FIELDS = 16


class ChannelReadError(Exception):
    """A channel file that cannot become a field plane; ``reason`` is the QC reason."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class ChannelFailure:
    """One channel of a field that could not be read, and why (``reason`` is the QC reason)."""

    channel: str
    reason: str
    detail: str


@dataclass(frozen=True)
class FieldRead:
    """A field's pixels (c, y, x), zeros in the channels listed in ``failures``."""

    pixels: np.ndarray
    failures: tuple[ChannelFailure, ...]

    @property
    def reason(self) -> str:
        """The first failure's reason, '' when every channel was read: the field's QC reason."""
        return self.failures[0].reason if self.failures else ""

    @property
    def detail(self) -> str:
        """Every failure's detail, each after its channel's name, for the log and QC."""
        return "; ".join(f"{failure.channel}: {failure.detail}" for failure in self.failures)


def read_field(field: FieldSource, channels: Sequence[str], shape: tuple[int, int]) -> FieldRead:
    """Every channel of one field; one that cannot be read stays zeros, so the others are kept, and is recorded."""
    pixels = np.empty((len(channels), *shape), dtype=PIXEL_DTYPE)
    failures = []
    for plane, channel, path in zip(pixels, channels, field.paths):
        try:
            read_channel(path, plane)
        except ChannelReadError as error:
            plane[...] = 0  # a decode that failed half-way may have written part of it
            failures.append(ChannelFailure(channel, error.reason, error.detail))
    return FieldRead(pixels, tuple(failures))


def read_channel(path: Path, plane: np.ndarray) -> None:
    """Decode one TIFF into ``plane``, checking its shape and dtype from the header first.

    Decoding in place spares a copy of every plane.
    """
    shape = plane.shape
    if not path.is_file():
        raise ChannelReadError("missing file", f"{path} does not exist")
    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages.first
            if tuple(page.shape) != tuple(shape):
                raise ChannelReadError("shape mismatch", f"{path} is {page.shape}, the plate's fields are {shape}")
            if page.dtype != PIXEL_DTYPE:
                raise ChannelReadError("dtype mismatch", f"{path} is {page.dtype}, expected {PIXEL_DTYPE}")
            page.asarray(out=plane)
    except ChannelReadError:
        raise
    except Exception as error:  # tifffile and its codecs raise many types for corrupt bytes
        raise ChannelReadError("unreadable", f"{path}: {type(error).__name__}: {error}") from None


def probe_field_shape(plate: str, fields: Sequence[FieldSource]) -> tuple[int, int]:
    """The plate's field shape: the most common TIFF header among fields spread over the plate.

    A majority vote keeps one odd file from defining the plate; the dtype is
    checked here too, so a plate of 8-bit images fails at once with a clear
    message instead of as thousands of 'dtype mismatch' fields.
    """
    step = max(1, len(fields) // PROBE_FIELDS)
    headers = Counter(header for field in fields[::step] for path in field.paths if (header := _header(path)))
    if not headers:
        raise InputError(f"plate {plate}: none of the sampled TIFFs could be read")
    (shape, dtype), _ = headers.most_common(1)[0]
    if dtype != PIXEL_DTYPE.str:
        raise InputError(f"plate {plate}: TIFFs are {np.dtype(dtype)}, expected {PIXEL_DTYPE}")
    if len(shape) != 2:
        raise InputError(f"plate {plate}: TIFF planes have shape {shape}, expected (y, x)")
    return shape


def _header(path: Path) -> tuple[tuple[int, ...], str] | None:
    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages.first
            return tuple(page.shape), page.dtype.str
    except Exception:  # a bad file simply does not vote; read_field reports it
        return None
