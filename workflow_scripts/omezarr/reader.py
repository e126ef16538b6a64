"""Reading a converted plate: wells, fields, pixels, labels, pixel size, status.

Later stages (QC, embeddings) go through this module only, so they work
the same on NGFF 0.5 (zarr v3, metadata under ``ome``) and 0.4 (zarr v2,
metadata at the top level) and never depend on the layout directly. Plates
from other NGFF writers (``ome_zarr.writer``, as the embedding tests and
benchmark write them) are read too: they lack only the conversion status.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pandas as pd
import zarr

from workflow_scripts.errors import InputError
from workflow_scripts.omezarr.keys import ILLUM_GROUP, PROVENANCE_KEY, STATUS_KEY
from workflow_scripts.wells import join_well, split_well


class PlateFormatError(InputError):
    """A plate that cannot be read as an NGFF HCS plate; the message names the plate (and field).

    A ``ValueError``, so callers that treat bad input as such need no change;
    its own type lets a stage tell an unreadable plate from its own checks.
    """


@dataclass(frozen=True)
class FieldInfo:
    """One field of a well: its index (the NGFF path), site and conversion status.

    ``site`` is None on plates without conversion status, which do not record it.
    """

    well: str
    field: int
    site: str | None
    reason: str
    detail: str

    @property
    def ok(self) -> bool:
        """False when a channel's TIFF could not be read: that channel holds zeros, ``detail`` names it."""
        return not self.reason

    def as_row(self) -> dict:
        """The field's columns in per-field tables (QC's ``fields.parquet`` among them)."""
        return {
            "Metadata_Well": self.well,
            "Metadata_Site": self.site,
            "Metadata_Field": self.field,
            "conversion_reason": self.reason,
            "conversion_detail": self.detail,
        }


def ngff_attributes(group: zarr.Group) -> dict:
    """NGFF metadata of a group: under ``ome`` in 0.5, at the top level in 0.4."""
    attrs = dict(group.attrs)
    return attrs.get("ome", attrs)


class OmeZarrPlate:
    """An opened HCS plate, as ``workflow_scripts.omezarr.writer`` or ``ome_zarr.writer`` write them."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.root = zarr.open_group(self.path, mode="r")
        except (OSError, ValueError) as error:
            raise PlateFormatError(f"{self.path}: not a zarr group ({error})") from None
        self._plate = ngff_attributes(self.root).get("plate")
        if self._plate is None:
            raise PlateFormatError(f"{self.path}: no NGFF plate metadata")

    @property
    def name(self) -> str:
        return str(self._plate.get("name", self.path.name))

    @property
    def ngff_version(self) -> str:
        attrs = ngff_attributes(self.root)
        return str(attrs.get("version", self._plate.get("version")))

    @property
    def provenance(self) -> dict:
        """How the plate was made (see ``provenance.plate_provenance``)."""
        try:
            return dict(self.root.attrs)[PROVENANCE_KEY]
        except KeyError:
            raise InputError(f"{self.path}: no provenance; not written by workflow_scripts.omezarr") from None

    @cached_property
    def wells(self) -> list[str]:
        """Wells in ``A01`` form, in the plate metadata's order."""
        return [join_well(*well["path"].split("/")) for well in self._plate["wells"]]

    def fields(self, well: str) -> list[FieldInfo]:
        """The well's fields in order, with the conversion status of each.

        A well without conversion status (a plate from another NGFF writer)
        has the fields its NGFF well metadata lists, with no site and no
        failure recorded.
        """
        group = self._group(well)
        attrs = dict(group.attrs)
        if STATUS_KEY in attrs:
            statuses = attrs[STATUS_KEY]["fields"]
            return [FieldInfo(well, s["field"], s["site"], s["reason"], s["detail"]) for s in statuses]
        images = ngff_attributes(group)["well"]["images"]
        return [FieldInfo(well, int(image["path"]), None, "", "") for image in images]

    def iter_fields(self) -> Iterator[FieldInfo]:
        for well in self.wells:
            yield from self.fields(well)

    def read_field(self, well: str, field: int, level: int = 0) -> np.ndarray:
        """A field's (c, y, x) pixels at pyramid ``level`` (0 = full resolution); uint16 in converted plates.

        Damaged chunks raise ``PlateFormatError`` naming the plate and field.
        """
        image = self._group(well)[str(field)]
        datasets = ngff_attributes(image)["multiscales"][0]["datasets"]
        try:
            return np.asarray(image[datasets[level]["path"]][...])
        except Exception as error:  # codecs and stores raise many types for damaged chunks
            raise PlateFormatError(f"{self.path}: well {well} field {field} cannot be read: {error}") from error

    @cached_property
    def _first_image(self) -> zarr.Group:
        """The first field of the first well: channels, levels and scales are plate-wide."""
        well = self._group(self.wells[0])
        return well[ngff_attributes(well)["well"]["images"][0]["path"]]

    @property
    def _multiscale(self) -> dict:
        return ngff_attributes(self._first_image)["multiscales"][0]

    @property
    def channels(self) -> list[str]:
        """Channel labels in array order (the configured channel order)."""
        return [channel["label"] for channel in ngff_attributes(self._first_image)["omero"]["channels"]]

    @property
    def field_shape(self) -> tuple[int, int]:
        """(y, x) of a field at full resolution."""
        level0 = self._first_image[self._multiscale["datasets"][0]["path"]]
        return tuple(level0.shape[1:])

    @property
    def levels(self) -> int:
        return len(self._multiscale["datasets"])

    def lazy_fields(self, keys: Sequence[tuple[str, int]], level: int) -> da.Array:
        """The (well, field) ``keys`` at ``level`` as one lazy (n, c, y, x) dask array.

        Nothing is read until computed, and then by dask's scheduler, so a
        plate-wide reduction reads fields in parallel and holds only a few.
        """
        array = self._first_image[self._multiscale["datasets"][level]["path"]]
        read = dask.delayed(self.read_field, pure=True)
        return da.stack(
            [da.from_delayed(read(well, field, level), array.shape, array.dtype) for well, field in keys]
        )

    @property
    def pixel_size_um(self) -> float | None:
        """Level-0 pixel size in micrometres, None when the acquisition did not say."""
        if self._multiscale["axes"][1].get("unit") != "micrometer":
            return None
        return float(self._multiscale["datasets"][0]["coordinateTransformations"][0]["scale"][1])

    def illumination(self) -> dict[str, np.ndarray] | None:
        """The gallery illumination functions kept with the plate, by channel, if any."""
        if ILLUM_GROUP not in self.root:
            return None
        group = self.root[ILLUM_GROUP]
        return {channel: np.asarray(group[channel][...]) for channel in self.channels}

    def field_table(self) -> pd.DataFrame:
        """One row per field: plate metadata, well, site, field index and conversion status."""
        plate = self.provenance["plate"]
        return pd.DataFrame([{**plate, **info.as_row()} for info in self.iter_fields()])

    def _group(self, well: str) -> zarr.Group:
        row, column = split_well(well)
        try:
            return self.root[f"{row}/{column}"]
        except KeyError:
            raise KeyError(f"{self.path}: no well {well}") from None


def open_plate(path: str | Path) -> OmeZarrPlate:
    return OmeZarrPlate(path)
