"""Just enough of an NGFF HCS plate reader for the embedding stage.

The stage needs, per field, the full-resolution (c, y, x) array and its
channel labels. NGFF 0.5 (zarr v3) keeps the metadata under the ``ome``
attribute; 0.4 (zarr v2) keeps it at the top level; both are read here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr


class PlateFormatError(ValueError):
    """An OME-Zarr plate that does not follow the NGFF HCS layout; names the group."""


@dataclass(frozen=True)
class FieldRef:
    """One field of view: its well (``A01`` form), its index in the well and its group path."""

    well: str
    field: int
    path: str


@dataclass(frozen=True)
class FieldImage:
    """A field's full-resolution pixels (c, y, x) and its channel labels."""

    ref: FieldRef
    pixels: np.ndarray
    labels: tuple[str, ...]


def ngff_attributes(group: zarr.Group) -> dict:
    """The NGFF metadata of a group, from ``ome`` (0.5) or the top level (0.4)."""
    attrs = group.attrs.asdict()
    return attrs.get("ome", attrs)


def well_name(well_path: str) -> str:
    """``A/1`` → ``A01``, the well naming of the profile tables."""
    row, _, column = well_path.partition("/")
    if not row.isalpha() or not column.isdigit():
        raise PlateFormatError(f"well path {well_path!r} is not of the form ROW/COLUMN")
    return f"{row.upper()}{int(column):02d}"


@dataclass(frozen=True)
class PlateZarr:
    """An opened plate: its root group and the path that names it in errors."""

    path: str
    root: zarr.Group


def open_plate(plate_zarr: str | Path) -> PlateZarr:
    """The plate's root group, checked to carry HCS plate metadata."""
    try:
        root = zarr.open_group(str(plate_zarr), mode="r")
    except (FileNotFoundError, ValueError) as error:
        raise PlateFormatError(f"{plate_zarr}: not a zarr group ({error})") from error
    if "plate" not in ngff_attributes(root):
        raise PlateFormatError(f"{plate_zarr}: no NGFF 'plate' metadata")
    return PlateZarr(str(plate_zarr), root)


def plate_well_paths(plate: PlateZarr) -> list[str]:
    """The well group paths (``A/1``) the plate metadata lists."""
    return [str(well["path"]) for well in ngff_attributes(plate.root)["plate"].get("wells", [])]


def well_fields(plate: PlateZarr, well_path: str) -> list[FieldRef]:
    """The fields listed in one well's metadata, in the order the well lists them."""
    try:
        images = ngff_attributes(plate.root[well_path]).get("well", {}).get("images")
    except KeyError as error:
        raise PlateFormatError(f"{plate.path}: well {well_path} is listed but missing") from error
    if not images:
        raise PlateFormatError(f"{plate.path}: well {well_path} lists no images")
    refs = []
    for image in images:
        if not str(image["path"]).isdigit():
            raise PlateFormatError(f"{plate.path}: well {well_path} has a non-numeric field path {image['path']!r}")
        refs.append(FieldRef(well_name(well_path), int(image["path"]), f"{well_path}/{image['path']}"))
    return refs


def read_field(plate: PlateZarr, ref: FieldRef) -> FieldImage:
    """Read a field's level-0 array and its omero channel labels."""
    try:
        image = plate.root[ref.path]
        attrs = ngff_attributes(image)
        level0 = attrs["multiscales"][0]["datasets"][0]["path"]
        labels = tuple(str(channel["label"]) for channel in attrs["omero"]["channels"])
    except (KeyError, IndexError, TypeError) as error:
        raise PlateFormatError(f"{plate.path}: field {ref.path} lacks multiscales or omero channel labels") from error
    try:
        pixels = np.asarray(image[level0][...])
    except Exception as error:  # codecs and stores raise many types for damaged chunks
        raise PlateFormatError(f"{plate.path}: field {ref.path} cannot be read: {error}") from error
    if pixels.ndim != 3 or pixels.shape[0] != len(labels):
        raise PlateFormatError(
            f"{plate.path}: field {ref.path} has shape {pixels.shape}, expected (c, y, x) with c = {len(labels)} labels"
        )
    return FieldImage(ref, pixels, labels)
