"""A field's NGFF image metadata: its multiscales (levels, axes, scales) and omero blocks.

``ome-zarr``'s ``write_multiscales_metadata`` writes them, but through
three attribute updates of a zarr group, each a rewrite of the group's
metadata document handed between threads. All the fields of a plate share
everything but their name and display windows, so the writer runs once per
process on an in-memory group, and each field gets a copy with its own
name and windows, to be written in one go.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import zarr
from ome_zarr.format import Format, FormatV04, FormatV05
from ome_zarr.writer import write_multiscales_metadata

from workflow_scripts.omezarr.display import omero
from workflow_scripts.omezarr.keys import AXES
from workflow_scripts.omezarr.options import ConversionOptions


def ngff_format(options: ConversionOptions) -> Format:
    return FormatV05() if options.ngff_version == "0.5" else FormatV04()


def field_attributes(
    name: str, options: ConversionOptions, pixel_size_um: float | None, channels: Sequence[str], smallest: np.ndarray
) -> dict:
    """The attributes of the field group ``name`` (its path from the plate root, like ``/B/2/0``).

    ``smallest`` is the field's last pyramid level, whose percentiles set the display windows.
    """
    attributes = copy.deepcopy(_template(options, pixel_size_um, tuple(channels)))
    ngff = attributes.get("ome", attributes)  # NGFF 0.5 nests its metadata under "ome"
    ngff["multiscales"][0]["name"] = name
    ngff["omero"] = omero(channels, smallest)
    return attributes


@lru_cache(maxsize=8)
def _template(options: ConversionOptions, pixel_size_um: float | None, channels: tuple[str, ...]) -> dict:
    """What ome-zarr writes for a field of these options, pixel size and channels (name and windows aside)."""
    group = zarr.open_group(zarr.storage.MemoryStore(), mode="w", zarr_format=options.zarr_format)
    write_multiscales_metadata(
        group,
        datasets=datasets(options.pyramid_levels, pixel_size_um),
        fmt=ngff_format(options),
        axes=list(AXES),
        axes_units={"y": "micrometer", "x": "micrometer"} if pixel_size_um else None,
        metadata={"omero": omero(channels, np.zeros((len(channels), 1, 1), dtype=np.uint16))},
    )
    return group.attrs.asdict()


def datasets(levels: int, pixel_size_um: float | None) -> list[dict]:
    """Level paths and scales: physical micrometres when known, else pixels."""
    size = pixel_size_um or 1.0
    entries = []
    for level in range(levels):
        scale = round(size * 2**level, 9)  # no float noise like 2.3920000000000003 in the metadata
        entries.append(
            {"path": str(level), "coordinateTransformations": [{"type": "scale", "scale": [1.0, scale, scale]}]}
        )
    return entries
