"""A fetched plate (``load_data.parquet`` + cached TIFFs) to an NGFF HCS plate.

Layout: ``{plate}.ome.zarr/{row}/{column}/{field}/{level}``, each level a
(c, y, x) uint16 array, level 0 chunked one channel x one whole field and
lower levels in one chunk, blosc-zstd with bitshuffle. NGFF metadata comes
from ``ome-zarr``'s writers (a field's from ``multiscales``); the fields'
nodes are written as files (``arrays``), the well and plate through zarr.

Completion is all-or-nothing: the plate is built under
``{plate}.ome.zarr.incomplete`` and renamed only after every well and the
plate metadata are written. A well is complete once its status attribute
(written last) exists, so a killed run resumes: the rerun keeps the
complete wells of a temporary plate made from the same inputs and
parameters, rewrites the rest, and ends with the same bytes an
uninterrupted run writes.

A channel whose TIFF cannot be read is written as zeros (the plate stays
rectangular) beside the field's readable channels, and recorded, with its
reason, in its well's status for QC. A plate where no field has a readable
channel is an error.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import zarr
from ome_zarr.writer import write_plate_metadata, write_well_metadata
from zarr.core.group import GroupMetadata

from workflow_scripts.errors import InputError
from workflow_scripts.illumination import apply_illumination, load_illumination
from workflow_scripts.omezarr.arrays import blosc, create_array, level_metadata, write_chunks, write_metadata
from workflow_scripts.omezarr.keys import ILLUM_GROUP, PROVENANCE_KEY, STATUS_KEY, SUMMARY_KEY
from workflow_scripts.omezarr.multiscales import field_attributes, ngff_format
from workflow_scripts.omezarr.options import ConversionOptions
from workflow_scripts.omezarr.parallel import WorkerPool
from workflow_scripts.omezarr.plate_sources import FieldSource, PlateSources, read_plate_sources
from workflow_scripts.omezarr.provenance import field_summary, plate_provenance
from workflow_scripts.omezarr.pyramid import pyramid
from workflow_scripts.omezarr.tiffs import probe_field_shape, read_field
from workflow_scripts.wells import ROWS, split_well

LOG = logging.getLogger(__name__)

TEMP_SUFFIX = ".incomplete"
# Errors that mean "this well was never finished": absent, half-written or without status.
_INCOMPLETE = (OSError, ValueError, KeyError, TypeError)


@dataclass(frozen=True)
class WellJob:
    """Everything one worker needs to write one well, picklable."""

    root: Path
    fields: tuple[FieldSource, ...]
    channels: tuple[str, ...]
    shape: tuple[int, int]
    pixel_size_um: float | None
    options: ConversionOptions
    illum_paths: tuple[tuple[str, Path], ...] | None


@dataclass(frozen=True)
class ConversionResult:
    """The finished plate, its field counts and how many wells a resume kept."""

    output: Path
    fields: dict
    resumed_wells: int


def temp_path(output: Path) -> Path:
    """Where the plate is built before the rename that completes it."""
    return output.with_name(output.name + TEMP_SUFFIX)


def convert_plate(
    load_data: str | Path,
    cache_dir: str | Path,
    output: str | Path,
    channels: Sequence[str],
    options: ConversionOptions,
) -> ConversionResult:
    """Convert one plate; raises if no field at all could be read (naming the plate)."""
    output = Path(output)
    temp = temp_path(output)
    with WorkerPool(options.workers) as pool:
        sources = read_plate_sources(load_data, cache_dir, channels)
        shape = probe_field_shape(sources.plate, list(sources.fields()))
        illum = _gallery_illumination(sources, shape, options.apply_illumination)
        provenance = plate_provenance(sources, options, shape, illum_stored=illum is not None)
        done = _prepare_temp(temp, provenance, sources, options)
        if done:
            LOG.info("plate %s: resuming, %d of %d wells already written", sources.plate, len(done), len(sources.wells))
        jobs = [
            _well_job(temp, fields, sources, shape, options)
            for well, fields in sources.wells.items()
            if well not in done
        ]
        pool.map(write_well, jobs)
    statuses = {well: _well_statuses(temp, well) for well in sources.wells}
    summary = _checked_summary(sources, statuses, temp)
    _finish_plate(temp, sources, summary, illum, options)
    _publish(temp, output)
    LOG.info("plate %s: wrote %s (%d fields, %d failed)", sources.plate, output, summary["total"], summary["failed"])
    return ConversionResult(output, summary, len(done))


def _well_job(
    temp: Path,
    fields: tuple[FieldSource, ...],
    sources: PlateSources,
    shape: tuple[int, int],
    options: ConversionOptions,
) -> WellJob:
    illum = tuple(sources.illum_paths.items()) if options.apply_illumination and sources.illum_paths else None
    return WellJob(temp, fields, sources.channels, shape, sources.pixel_size_um, options, illum)


def _gallery_illumination(sources: PlateSources, shape: tuple[int, int], apply: bool) -> np.ndarray | None:
    """The plate's illumination functions (c, y, x), or None when there are none to keep.

    Unusable files are an error only when they must be applied; otherwise the
    plate is converted without them and QC computes its own.
    """
    if sources.illum_paths is None:
        if apply:
            raise InputError(f"plate {sources.plate}: apply_illumination is set but load_data has no URL_Illum columns")
        return None
    try:
        return load_illumination(sources.illum_paths, sources.channels, shape)
    except ValueError as error:
        if apply:
            raise InputError(f"plate {sources.plate}: {error}") from None
        LOG.warning("plate %s: gallery illumination not kept: %s", sources.plate, error)
        return None


def _prepare_temp(temp: Path, provenance: dict, sources: PlateSources, options: ConversionOptions) -> set[str]:
    """Create the temporary plate, or reuse one made from the same inputs; return its complete wells."""
    if temp.exists():
        if _stored_provenance(temp) == provenance:
            _drop_unfinished_plate_writes(temp)
            _create_rows(zarr.open_group(temp, mode="r+"), sources)
            return {well for well in sources.wells if _well_statuses(temp, well, required=False) is not None}
        LOG.warning("discarding %s: it was made from other inputs or parameters", temp)
        shutil.rmtree(temp)
    root = zarr.open_group(temp, mode="w", zarr_format=options.zarr_format)
    root.attrs[PROVENANCE_KEY] = provenance
    _create_rows(root, sources)
    return set()


def _stored_provenance(temp: Path) -> dict | None:
    try:
        return dict(zarr.open_group(temp, mode="r").attrs)[PROVENANCE_KEY]
    except _INCOMPLETE:
        return None


def _drop_unfinished_plate_writes(temp: Path) -> None:
    """Remove what a kill during the final plate-level writes can leave.

    zarr writes each object under a ``*.partial`` name first; wells that were
    not finished are rewritten whole by their worker.
    """
    for stray in [*temp.glob("*.partial"), *temp.glob("*/*.partial")]:
        stray.unlink()
    shutil.rmtree(temp / ILLUM_GROUP, ignore_errors=True)


def _create_rows(root: zarr.Group, sources: PlateSources) -> None:
    for row in sorted({split_well(well)[0] for well in sources.wells}):
        root.require_group(row)


def _well_statuses(temp: Path, well: str, required: bool = True) -> list[dict] | None:
    """The per-field status a finished well carries; None (or an error) if unfinished."""
    row, column = split_well(well)
    try:
        return list(zarr.open_group(temp / row / column, mode="r").attrs[STATUS_KEY]["fields"])
    except _INCOMPLETE:
        if required:
            raise RuntimeError(f"well {well} of {temp} has no conversion status after writing") from None
        return None


def write_well(job: WellJob) -> None:
    """Write one well from scratch; its status attribute goes last and marks it complete."""
    row, column = split_well(job.fields[0].well)
    shutil.rmtree(job.root / row / column, ignore_errors=True)
    well = zarr.open_group(job.root, mode="r+")[row].create_group(column)
    illum = _worker_illumination(job.illum_paths, job.channels, job.shape)
    statuses = [_write_field(job.root / row / column, field, job, illum) for field in job.fields]
    write_well_metadata(well, [{"path": str(field.index)} for field in job.fields], fmt=ngff_format(job.options))
    well.attrs[STATUS_KEY] = {"fields": statuses}


@lru_cache(maxsize=1)
def _worker_illumination(
    paths: tuple[tuple[str, Path], ...] | None, channels: tuple[str, ...], shape: tuple[int, int]
) -> np.ndarray | None:
    """Illumination to apply, loaded once per worker process."""
    return None if paths is None else load_illumination(dict(paths), channels, shape)


def _write_field(well: Path, field: FieldSource, job: WellJob, illum: np.ndarray | None) -> dict:
    """Write one field's group, levels and metadata; return its status: reason, detail and each failed channel."""
    read = read_field(field, job.channels, job.shape)
    pixels = read.pixels if illum is None else apply_illumination(read.pixels, illum)  # zeros stay zeros
    levels = pyramid(pixels, job.options.pyramid_levels)
    group = well / str(field.index)
    name = "/" + group.relative_to(job.root).as_posix()
    attributes = field_attributes(name, job.options, job.pixel_size_um, job.channels, levels[-1])
    write_metadata(group, GroupMetadata(attributes=attributes, zarr_format=job.options.zarr_format))
    for index, level in enumerate(levels):
        _write_level(group / str(index), index, level, job.options)
    return {
        "field": field.index,
        "site": field.site,
        "reason": read.reason,
        "detail": read.detail,
        "failed_channels": [asdict(failure) for failure in read.failures],
    }


def _write_level(directory: Path, index: int, level: np.ndarray, options: ConversionOptions) -> None:
    """One pyramid level as an array: its metadata, then its chunks (or its shard, through zarr)."""
    metadata = level_metadata(index, level.shape, options)
    write_metadata(directory, metadata)
    if options.shard_per_field:
        zarr.open_array(directory, mode="r+")[...] = level  # zarr owns the shard index
    else:
        write_chunks(directory, metadata, level, blosc(options.compression_level, "bitshuffle"))


def _checked_summary(sources: PlateSources, statuses: dict[str, list[dict]], temp: Path) -> dict:
    """Log every field with a failed channel; a plate where no field has a readable channel is an error naming it.

    A field that kept some channels still counts as failed in the summary
    (QC excludes it), but it is not lost: the plate has data to convert.
    """
    for well, fields in statuses.items():
        for status in fields:
            if status["reason"]:
                LOG.warning(
                    "plate %s well %s site %s: %s, zeros in %s (%s)",
                    sources.plate,
                    well,
                    status["site"],
                    status["reason"],
                    ", ".join(failure["channel"] for failure in status["failed_channels"]),
                    status["detail"],
                )
    every_field = [status for fields in statuses.values() for status in fields]
    summary = field_summary(every_field)
    if all(len(status["failed_channels"]) == len(sources.channels) for status in every_field):
        shutil.rmtree(temp)
        raise InputError(
            f"plate {sources.plate}: every one of its {summary['total']} fields failed: {summary['failed_by_reason']}"
        )
    return summary


def _finish_plate(
    temp: Path, sources: PlateSources, summary: dict, illum: np.ndarray | None, options: ConversionOptions
) -> None:
    """The plate-level writes: illumination arrays, HCS metadata, field counts."""
    root = zarr.open_group(temp, mode="r+")
    if illum is not None:
        _write_illumination(root, sources, illum, options)
    wells = [split_well(well) for well in sources.wells]
    rows = sorted({row for row, _ in wells}, key=ROWS.index)
    columns = sorted({column for _, column in wells}, key=int)
    write_plate_metadata(
        root,
        rows=rows,
        columns=columns,
        wells=[f"{row}/{column}" for row, column in wells],
        fmt=ngff_format(options),
        field_count=max(len(fields) for fields in sources.wells.values()),
        name=sources.plate,
    )
    root.attrs[SUMMARY_KEY] = summary


def _write_illumination(root: zarr.Group, sources: PlateSources, illum: np.ndarray, options: ConversionOptions) -> None:
    """The gallery's functions as ``illum/{channel}`` (y, x) float32 arrays beside the wells."""
    group = root.create_group(ILLUM_GROUP)
    group.attrs["files"] = dict(sources.illum_urls or {})
    group.attrs["applied"] = options.apply_illumination
    for channel, plane in zip(sources.channels, illum):
        array = create_array(
            group, channel, plane.shape, plane.shape, options, dtype="float32", dimension_names=("y", "x")
        )
        array[...] = plane


def _publish(temp: Path, output: Path) -> None:
    """The rename that makes the plate exist; an older plate at ``output`` is replaced."""
    if output.exists():
        shutil.rmtree(output)
    os.replace(temp, output)
