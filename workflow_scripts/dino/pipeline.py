"""Plate → fields → crops → ViT → per-field and per-well embeddings.

Reading overlaps compute: a thread pool decodes fields ahead of the device
(into pinned memory when the device is a GPU, so host-to-device copies are
asynchronous), fields are preprocessed in small same-shape groups on the
device, and kept crops from many fields are pooled into full model batches.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from workflow_scripts.dino.device import DeviceClock, select_device, select_precision
from workflow_scripts.dino.preprocess import PreparedFields, Recipe, prepare_fields
from workflow_scripts.dino.tables import FieldRecord, field_table, well_table
from workflow_scripts.errors import InputError
from workflow_scripts.omezarr.reader import FieldInfo, OmeZarrPlate, open_plate

log = logging.getLogger(__name__)

FIELDS_PER_STEP_DIVISOR = 16  # a 1080² field yields 16 crops: one step ≈ one model batch


class EmbedError(InputError):
    """Input the embedding stage cannot use; the message names the plate and field."""


@dataclass(frozen=True)
class RunOptions:
    """How to run (not what to compute): none of these change the recipe's result beyond rounding."""

    batch_size: int
    workers: int
    device: str
    precision: str

    @classmethod
    def from_config(cls, embedding: dict[str, Any]) -> RunOptions:
        """The execution settings of the config's ``embedding`` section."""
        return cls(embedding["batch_size"], embedding["workers"], embedding["device"], embedding["precision"])


@dataclass
class StageTimes:
    """Seconds spent per step; ``read`` is summed over the reader threads."""

    read: float = 0.0
    read_wait: float = 0.0
    preprocess: float = 0.0
    model: float = 0.0
    wall: float = 0.0


@dataclass
class PlateEmbeddings:
    """The stage's result for one plate, before metadata is stamped on."""

    fields: pd.DataFrame
    wells: pd.DataFrame
    wells_without_embedding: list[str]
    n_fields_read: int
    n_crops_kept: int
    device: str
    precision: str
    times: StageTimes


def prefetch(fn: Callable, items: Iterable, workers: int, depth: int) -> Iterator:
    """``map(fn, items)`` in order, with up to ``depth`` calls running ahead on threads."""
    items = iter(items)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending = deque(pool.submit(fn, item) for item in islice(items, depth))
        try:
            while pending:
                result = pending.popleft().result()
                pending.extend(pool.submit(fn, item) for item in islice(items, 1))
                yield result
        finally:
            for future in pending:
                future.cancel()


@dataclass
class LoadedField:
    """A field read by a worker: its pixels in model channel order as a host tensor.

    The uint16 pixels travel bit-for-bit as int16, a dtype every device
    kernel supports; ``widen_uint16`` restores their values on the device.
    """

    info: FieldInfo
    pixels: torch.Tensor
    read_seconds: float


def load_field(
    plate: OmeZarrPlate, labels: tuple[str, ...], channels: tuple[str, ...], pin: bool, info: FieldInfo
) -> LoadedField:
    """Read one field on a worker thread and put its channels (``labels``) in model order (``channels``).

    Pinned memory (on GPU nodes) lets the later copy to the device run
    asynchronously.
    """
    began = time.perf_counter()
    pixels = plate.read_field(info.well, info.field)
    where = f"{plate.path} well {info.well} field {info.field}"
    if pixels.dtype != np.uint16:
        raise EmbedError(f"{where}: pixels are {pixels.dtype}, expected uint16")
    if pixels.ndim != 3 or pixels.shape[0] != len(labels):
        raise EmbedError(f"{where}: shape {pixels.shape}, expected (c, y, x) with c = {len(labels)} channel labels")
    order = channel_indices(labels, channels, where)
    if order != list(range(len(labels))):
        pixels = pixels[order]
    tensor = torch.from_numpy(np.ascontiguousarray(pixels).view(np.int16))
    if pin:
        tensor = tensor.pin_memory()
    return LoadedField(info, tensor, time.perf_counter() - began)


def widen_uint16(raw: torch.Tensor) -> torch.Tensor:
    """int16 tensors holding uint16 bits → int32 tensors holding the uint16 values."""
    return raw.to(torch.int32).bitwise_and_(0xFFFF)


def list_fields(plate: OmeZarrPlate, workers: int) -> list[FieldInfo]:
    """Every field of the plate, wells in plate-metadata order; well metadata read in parallel."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        per_well = list(pool.map(plate.fields, plate.wells))
    infos = [info for well_infos in per_well for info in well_infos]
    if not infos:
        raise EmbedError(f"{plate.path}: the plate lists no fields")
    return infos


def channel_indices(labels: tuple[str, ...], channels: tuple[str, ...], where: str) -> list[int]:
    """Positions of the model's channels among the plate's labels; a missing channel is an error."""
    missing = [name for name in channels if name not in labels]
    if missing:
        raise EmbedError(f"{where}: channel(s) {missing} not among the plate's channel labels {list(labels)}")
    return [labels.index(name) for name in channels]


def same_shape_groups(fields: Iterable[LoadedField], size: int) -> Iterator[list[LoadedField]]:
    """Consecutive fields in groups of up to ``size`` that can be stacked into one tensor."""
    group: list[LoadedField] = []
    for loaded in fields:
        if group and (len(group) == size or loaded.pixels.shape != group[0].pixels.shape):
            yield group
            group = []
        group.append(loaded)
    if group:
        yield group


class CropBatcher:
    """Pools crops from many fields and runs the model on full batches."""

    def __init__(self, model: nn.Module, batch_size: int, dtype: torch.dtype, clock: DeviceClock) -> None:
        self.model = model
        self.batch_size = batch_size
        self.dtype = dtype
        self.clock = clock
        self.device_type = next(model.parameters()).device.type
        self.pending: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.pending_count = 0
        self.outputs: list[torch.Tensor] = []
        self.owners: list[torch.Tensor] = []

    def add(self, crops: torch.Tensor, owners: torch.Tensor) -> None:
        """Queue crops (K, C, s, s) with the global index of the field each belongs to."""
        self.pending.append((crops, owners))
        self.pending_count += len(crops)
        while self.pending_count >= self.batch_size:
            self._run(self.batch_size)

    def finish(self) -> tuple[np.ndarray, np.ndarray]:
        """Run what is left; return embeddings (N, D) float32 and owners (N,)."""
        if self.pending_count:
            self._run(self.pending_count)
        if not self.outputs:
            return np.zeros((0, 0), np.float32), np.zeros(0, np.int64)
        return torch.cat(self.outputs).cpu().numpy(), torch.cat(self.owners).cpu().numpy()

    def _run(self, count: int) -> None:
        crops = torch.cat([c for c, _ in self.pending])
        owners = torch.cat([o for _, o in self.pending])
        rest = crops[count:], owners[count:]
        self.pending = [rest] if len(rest[0]) else []
        self.pending_count = len(rest[0])
        with (
            self.clock.section("model"),
            torch.autocast(self.device_type, dtype=self.dtype, enabled=self.dtype != torch.float32),
        ):
            self.outputs.append(self.model(crops[:count]).float())
        self.owners.append(owners[:count])


def _timed(fields: Iterator[LoadedField], times: StageTimes) -> Iterator[LoadedField]:
    """Pass fields through, counting reader time and how long the device side waited for it."""
    while True:
        began = time.perf_counter()
        loaded = next(fields, None)
        times.read_wait += time.perf_counter() - began
        if loaded is None:
            return
        times.read += loaded.read_seconds
        yield loaded


def _prepare_group(
    group: list[LoadedField], plate: OmeZarrPlate, recipe: Recipe, device: torch.device
) -> PreparedFields:
    """Move a group of equally sized fields to the device and run the recipe on them."""
    for loaded in group:
        if min(loaded.pixels.shape[1:]) < recipe.crop_size:
            raise EmbedError(
                f"{plate.path} well {loaded.info.well} field {loaded.info.field}: "
                f"{tuple(loaded.pixels.shape[1:])} pixels is smaller than one {recipe.crop_size}-pixel crop"
            )
    raw = torch.stack([loaded.pixels.to(device, non_blocking=True) for loaded in group])
    return prepare_fields(widen_uint16(raw), recipe)


def _records(group: list[LoadedField], prepared: PreparedFields, channels: tuple[str, ...]) -> list[FieldRecord]:
    n_kept, otsu, constant = prepared.n_kept.tolist(), prepared.otsu.tolist(), prepared.constant_channels.tolist()
    return [
        FieldRecord(
            well=loaded.info.well,
            field=loaded.info.field,
            n_crops=prepared.n_crops,
            n_kept=n_kept[i],
            otsu=otsu[i],
            constant_channels=tuple(name for name, flag in zip(channels, constant[i], strict=True) if flag),
        )
        for i, loaded in enumerate(group)
    ]


def embed_plate(
    plate_zarr: str,
    model: nn.Module,
    recipe: Recipe,
    options: RunOptions,
    exclude: frozenset[tuple[str, int]] = frozenset(),
) -> PlateEmbeddings:
    """Embed every field of an OME-Zarr plate except ``exclude`` ((well, field) pairs).

    Fields with a constant channel cannot be rescaled and are counted as
    unusable; a well left with no embedded field has no row, and is named
    in ``wells_without_embedding``.
    """
    began = time.perf_counter()
    plate = open_plate(plate_zarr)
    device = select_device(options.device)
    dtype = select_precision(options.precision, device)
    infos = list_fields(plate, options.workers)
    kept = [info for info in infos if (info.well, info.field) not in exclude]
    excluded = Counter(info.well for info in infos if (info.well, info.field) in exclude)
    model = model.to(device).eval()
    clock = DeviceClock(device)
    batcher = CropBatcher(model, options.batch_size, dtype, clock)
    times = StageTimes()
    records: list[FieldRecord] = []
    group_size = max(1, options.batch_size // FIELDS_PER_STEP_DIVISOR)
    depth = max(2 * options.workers, 2 * group_size)
    read = partial(load_field, plate, tuple(plate.channels), recipe.channels, device.type == "cuda")
    loader = prefetch(read, kept, options.workers, depth)
    with torch.inference_mode():
        for group in same_shape_groups(_timed(loader, times), group_size):
            with clock.section("preprocess"):
                prepared = _prepare_group(group, plate, recipe, device)
            offset = len(records)
            records.extend(_records(group, prepared, recipe.channels))
            batcher.add(prepared.crops, prepared.crop_field + offset)
        embeddings, owners = batcher.finish()
    _log_unusable(plate.path, records)
    if len(owners) == 0:
        raise EmbedError(
            f"{plate.path}: no field could be embedded ({len(infos)} fields, {sum(excluded.values())} excluded)"
        )
    wells = well_table(records, embeddings, owners, recipe.aggregation, excluded)
    missing = sorted({info.well for info in infos} - set(wells["Metadata_Well"]))
    if missing:
        log.warning("%s: no embedded field in well(s) %s; they have no row", plate.path, ", ".join(missing))
    fields = field_table(records, embeddings, owners)
    times.preprocess, times.model = clock.total("preprocess"), clock.total("model")
    times.wall = time.perf_counter() - began
    return PlateEmbeddings(
        fields=fields,
        wells=wells,
        wells_without_embedding=missing,
        n_fields_read=len(records),
        n_crops_kept=len(owners),
        device=str(device),
        precision=str(dtype).removeprefix("torch."),
        times=times,
    )


def _log_unusable(plate_path: Path, records: list[FieldRecord]) -> None:
    for record in records:
        if not record.usable:
            log.warning(
                "%s well %s field %d: constant channel(s) %s; field not embedded",
                plate_path,
                record.well,
                record.field,
                ", ".join(record.constant_channels),
            )
