"""TIFF -> OME-Zarr: this converter against ome-zarr-py's own writer, on the same TIFFs, in one run.

Builds a fetched plate (default 4 wells x 9 fields x 5 channels x 1080^2
uint16, ~420 MB of pixels, from the real fields in ``jump-pixels``), then
times, best of ``--repeats`` with the repeats interleaved (each round runs
every step once, so a burst of load on the shared host hits all of them):

- floor: ``tifffile.imread`` of every channel, ``np.save`` of each field's
  (c, y, x) stack;
- codec bound: blosc-zstd-bitshuffle encoding alone of the level-0 planes
  of one well (already in memory), the least any conversion must spend;
- convert: ``convert_plate`` with 1 and 2 workers (processes, each
  single-threaded, blosc included);
- ome-zarr-py: an HCS plate written with ``write_plate_metadata``,
  ``write_well_metadata`` and, per field, ``write_multiscale`` of the same
  pyramid (this converter's 2x2 block means, computed in the timed run),
  with the same codec and chunks, once single-threaded (dask's synchronous
  scheduler, zarr's pool of one thread: the per-core figure) and once with
  the libraries' default threads. ``write_image`` with its own
  ``local_mean`` pyramid is a third row: same level 0, but its lower levels
  truncate the block mean where ours round it, so only level 0 can match.

Every step runs in its own long-lived forked process (zarr's and dask's
thread settings are per process), which reports the wall and CPU time of
each run, its worker processes included; the table keeps each step's
least wall time and least CPU time over the rounds. Per-core throughput
is pixel megabytes per CPU-second; on a shared host "CPU / wall" below the
number of cores a step may use shows the time other jobs took. After the last
round every array of ome-zarr-py's plate is compared with ours, pixel for
pixel, along with its chunks and codecs; a mismatch stops the benchmark.

    python benchmarks/convert.py [--pixels ../shared/fixtures/jump-pixels] [--repeats 5]
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import dask
import numpy as np
import tifffile
import zarr
from ome_zarr.scale import Methods
from ome_zarr.writer import write_image, write_multiscale, write_plate_metadata, write_well_metadata
from zarr.codecs import BloscCodec

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for tests.support

from tests.support.sample_plate import FetchedPlate, real_fields, sample_fields, write_fetched_plate
from tests.support.settings import conversion_options
from workflow_scripts.omezarr.arrays import blosc, level_chunks
from workflow_scripts.omezarr.keys import AXES
from workflow_scripts.omezarr.multiscales import ngff_format
from workflow_scripts.omezarr.options import ConversionOptions
from workflow_scripts.omezarr.parallel import single_threaded
from workflow_scripts.omezarr.plate_sources import read_plate_sources
from workflow_scripts.omezarr.pyramid import level_shapes, pyramid
from workflow_scripts.omezarr.writer import convert_plate
from workflow_scripts.wells import ROWS, split_well

CHANNELS = ["DNA", "AGP", "RNA", "ER", "Mito"]
REPO = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pixels", type=Path, default=REPO.parent / "shared" / "fixtures" / "jump-pixels")
    parser.add_argument("--wells", type=int, default=4)
    parser.add_argument("--fields", type=int, default=9)
    parser.add_argument("--size", type=int, default=1080)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--compression-level", type=int, default=conversion_options().compression_level)
    parser.add_argument("--work-dir", type=Path, default=None, help="where to build the plate (default: a temp dir)")
    return parser.parse_args()


def build_plate(args: argparse.Namespace, root: Path) -> FetchedPlate:
    if not args.pixels.is_dir():
        raise SystemExit(f"real pixel fixtures not found at {args.pixels}; pass --pixels")
    real = real_fields(args.pixels, CHANNELS)[0]
    wells = [f"B{column:02d}" for column in range(2, 2 + args.wells)]
    sites = [str(site) for site in range(1, args.fields + 1)]
    fields = sample_fields(real, wells, sites, (args.size, args.size))
    return write_fetched_plate(root, fields, CHANNELS)


# --- What the steps run. Module-level functions, so the step processes can receive them. ---


def floor(plate: FetchedPlate, out: Path) -> None:
    """Decode every TIFF and save each field's raw stack with numpy."""
    sources = read_plate_sources(plate.load_data, plate.cache_dir, CHANNELS)
    out.mkdir()
    for index, field in enumerate(sources.fields()):
        np.save(out / f"{index}.npy", np.stack([tifffile.imread(path) for path in field.paths]))


FIRST_WELL: list[np.ndarray] = []  # the codec bound's planes, in its own process


def load_first_well(plate: FetchedPlate) -> None:
    """Read the level-0 planes of the plate's first well once, before the codec bound is timed."""
    single_threaded()
    sources = read_plate_sources(plate.load_data, plate.cache_dir, CHANNELS)
    FIRST_WELL.extend(tifffile.imread(path) for field in next(iter(sources.wells.values())) for path in field.paths)


def encode_only(clevel: int, out: Path) -> None:
    """Encode the first well's level-0 planes; write nothing."""
    codec = blosc(clevel, "bitshuffle")
    out.mkdir()
    for plane in FIRST_WELL:
        codec.encode(plane)


def convert(plate: FetchedPlate, options: ConversionOptions, out: Path) -> None:
    convert_plate(plate.load_data, plate.cache_dir, out, CHANNELS, options)


def storage_options(options: ConversionOptions, shape: tuple[int, ...]) -> list[dict]:
    """ome-zarr-py's per-level storage options for this converter's chunks and codec."""
    if options.zarr_format == 3:
        codec = BloscCodec(cname="zstd", clevel=options.compression_level, shuffle="bitshuffle", blocksize=0)
    else:
        codec = blosc(options.compression_level, "bitshuffle")
    shapes = level_shapes(shape, options.pyramid_levels)
    return [{"chunks": level_chunks(level, s), "compressors": codec} for level, s in enumerate(shapes)]


def ome_zarr_multiscale(pixels: np.ndarray, group: zarr.Group, options: ConversionOptions) -> None:
    """One field with ``write_multiscale`` of this converter's pyramid."""
    levels = pyramid(pixels, options.pyramid_levels)
    write_multiscale(
        levels, group, fmt=ngff_format(options), axes=list(AXES), storage_options=storage_options(options, pixels.shape)
    )


def ome_zarr_image(pixels: np.ndarray, group: zarr.Group, options: ConversionOptions) -> None:
    """One field with ``write_image`` and its own ``local_mean`` pyramid."""
    write_image(
        pixels,
        group,
        scale_factors=tuple(2**level for level in range(1, options.pyramid_levels)),
        method=Methods.LOCAL_MEAN,
        fmt=ngff_format(options),
        axes=list(AXES),
        storage_options=storage_options(options, pixels.shape),
    )


def ome_zarr_plate(plate: FetchedPlate, options: ConversionOptions, write_field: Callable, out: Path) -> None:
    """The plate as ome-zarr-py writes an HCS plate: plate and well metadata, then every field."""
    sources = read_plate_sources(plate.load_data, plate.cache_dir, CHANNELS)
    fmt = ngff_format(options)
    root = zarr.open_group(out, mode="w", zarr_format=options.zarr_format)
    wells = [split_well(well) for well in sources.wells]
    write_plate_metadata(
        root,
        rows=sorted({row for row, _ in wells}, key=ROWS.index),
        columns=sorted({column for _, column in wells}, key=int),
        wells=[f"{row}/{column}" for row, column in wells],
        fmt=fmt,
        field_count=max(len(fields) for fields in sources.wells.values()),
        name=sources.plate,
    )
    for (row, column), fields in zip(wells, sources.wells.values()):
        group = root.require_group(row).require_group(column)
        write_well_metadata(group, [{"path": str(field.index)} for field in fields], fmt=fmt)
        for field in fields:
            pixels = np.stack([tifffile.imread(path) for path in field.paths])
            write_field(pixels, group.create_group(str(field.index)), options)


def one_thread() -> None:
    """zarr, blosc and dask on one thread in this process."""
    single_threaded()
    dask.config.set(scheduler="synchronous")


def default_threads() -> None:
    """The libraries' defaults (dask's threaded scheduler, zarr's thread pool)."""


# --- Measuring. ---


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (worker processes)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(run: Callable[[Path], object], out: Path) -> tuple[float, float]:
    """Wall and CPU seconds of ``run(out)``, in the step's process."""
    cpu, start = cpu_seconds(), time.perf_counter()
    run(out)
    return time.perf_counter() - start, cpu_seconds() - cpu


@dataclass(frozen=True)
class Step:
    """One measured way to do (part of) the conversion, and the process settings it runs under."""

    name: str
    cores: int
    megabytes: float
    run: Callable[[Path], object]
    setup: Callable[[], None] = single_threaded


@dataclass
class Timing:
    """A step's least wall time and least CPU time over the rounds (each may come from another round)."""

    step: Step
    seconds: float = float("inf")
    cpu_seconds: float = float("inf")

    def add(self, seconds: float, cpu: float) -> None:
        self.seconds, self.cpu_seconds = min(self.seconds, seconds), min(self.cpu_seconds, cpu)

    @property
    def per_core(self) -> float:
        """Pixel megabytes per CPU-second."""
        return self.step.megabytes / self.cpu_seconds


def measure(steps: list[Step], scratch: Path, repeats: int) -> tuple[list[Timing], dict[str, Path]]:
    """Best of ``repeats`` interleaved rounds; the last round's plates are kept for the comparison."""
    context = multiprocessing.get_context("fork")
    pools = [ProcessPoolExecutor(1, mp_context=context, initializer=step.setup) for step in steps]
    timings = [Timing(step) for step in steps]
    kept: dict[str, Path] = {}
    try:
        for round_ in range(repeats):
            for index, (pool, timing) in enumerate(zip(pools, timings)):
                out = scratch / f"step{index}.ome.zarr"
                timing.add(*pool.submit(timed, timing.step.run, out).result())
                if round_ == repeats - 1:
                    kept[timing.step.name] = out
                else:
                    shutil.rmtree(out)
    finally:
        for pool in pools:
            pool.shutdown()
    return timings, kept


# --- Checking that the plates hold the same pixels, chunks and codecs. ---


def codecs(array: zarr.Array) -> str:
    """An array's codecs (zarr v3) or compressor (v2), as comparable text."""
    metadata = array.metadata
    return str(metadata.codecs if metadata.zarr_format == 3 else metadata.compressor)


def compare_plates(ours: Path, theirs: Path, plate: FetchedPlate, levels: int, exact_levels: int) -> int:
    """Assert every field's first ``exact_levels`` levels equal ours (pixels, chunks, codecs); max |diff| of the rest.

    Level 0 is also compared with the TIFFs themselves.
    """
    sources = read_plate_sources(plate.load_data, plate.cache_dir, CHANNELS)
    worst = 0
    for field in sources.fields():
        row, column = split_well(field.well)
        for level in range(levels):
            mine = zarr.open_array(ours / row / column / str(field.index) / str(level), mode="r")
            peer = zarr.open_array(theirs / row / column / str(field.index) / f"s{level}", mode="r")
            where = f"{theirs.name} {field.well} field {field.index} level {level}"
            assert (peer.chunks, peer.dtype) == (mine.chunks, mine.dtype), f"{where}: chunks or dtype differ"
            assert codecs(peer) == codecs(mine), f"{where}: codecs differ"
            a, b = mine[...], peer[...]
            if level == 0:
                tiffs = np.stack([tifffile.imread(path) for path in field.paths])
                assert np.array_equal(a, tiffs), f"{where}: ours differs from the TIFFs"
            if level < exact_levels:
                assert np.array_equal(a, b), f"{where}: pixels differ"
            else:
                worst = max(worst, int(np.abs(a.astype(np.int32) - b).max()))
    return worst


# --- Running and reporting. ---


def steps_for(plate: FetchedPlate, args: argparse.Namespace, megabytes: float, first_well: float) -> list[Step]:
    options = conversion_options(workers=1, compression_level=args.compression_level)
    clevel = args.compression_level
    return [
        Step("floor (tifffile + np.save)", 1, megabytes, partial(floor, plate)),
        Step(
            f"codec bound (blosc-zstd {clevel} bitshuffle, encode only, 1 well)",
            1,
            first_well,
            partial(encode_only, clevel),
            partial(load_first_well, plate),
        ),
        Step("ours: convert_plate, 1 worker", 1, megabytes, partial(convert, plate, options)),
        Step(
            "ours: convert_plate, 2 workers",
            2,
            megabytes,
            partial(convert, plate, conversion_options(workers=2, compression_level=clevel)),
        ),
        Step(
            "ome-zarr-py: write_multiscale of the same pyramid, 1 thread",
            1,
            megabytes,
            partial(ome_zarr_plate, plate, options, ome_zarr_multiscale),
            one_thread,
        ),
        Step(
            "ome-zarr-py: write_multiscale of the same pyramid, default threads",
            2,
            megabytes,
            partial(ome_zarr_plate, plate, options, ome_zarr_multiscale),
            default_threads,
        ),
        Step(
            "ome-zarr-py: write_image (its local_mean pyramid), 1 thread",
            1,
            megabytes,
            partial(ome_zarr_plate, plate, options, ome_zarr_image),
            one_thread,
        ),
    ]


def main() -> None:
    args = parse_args()
    options = conversion_options(compression_level=args.compression_level)
    with tempfile.TemporaryDirectory(dir=args.work_dir) as tmp:
        root = Path(tmp)
        plate = build_plate(args, root / "fetched")
        megabytes = args.wells * args.fields * len(CHANNELS) * args.size**2 * 2 / 1e6
        first_well = args.fields * len(CHANNELS) * args.size**2 * 2 / 1e6
        steps = steps_for(plate, args, megabytes, first_well)
        timings, kept = measure(steps, root, args.repeats)
        ours = kept[steps[2].name]
        levels = options.pyramid_levels
        pixels = {steps[2].name: "-", steps[3].name: "-"}
        for step in steps[4:6]:
            compare_plates(ours, kept[step.name], plate, levels, exact_levels=levels)
            pixels[step.name] = "identical (all levels)"
        worst = compare_plates(ours, kept[steps[6].name], plate, levels, exact_levels=1)
        pixels[steps[6].name] = f"level 0 identical; lower levels differ by up to {worst}"
    print_table(timings, pixels, megabytes, args)


def print_table(timings: list[Timing], pixels: dict[str, str], megabytes: float, args: argparse.Namespace) -> None:
    ours = next(t for t in timings if t.step.name.startswith("ours") and t.step.cores == 1)
    print(
        f"plate: {args.wells} wells x {args.fields} fields x {len(CHANNELS)} channels x {args.size}^2 uint16 "
        f"= {megabytes:.0f} MB; best of {args.repeats} interleaved rounds"
    )
    columns = ["step", "cores", "seconds", "CPU s", "CPU / wall", "MB/s", "MB per CPU-s (per core)"]
    columns += ["ours per core / this", "pixels vs ours"]
    print("| " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * (len(columns) - 2) + "---|")
    for t in timings:
        print(
            f"| {t.step.name} | {t.step.cores} | {t.seconds:.2f} | {t.cpu_seconds:.2f} | "
            f"{t.cpu_seconds / t.seconds:.2f} | {t.step.megabytes / t.seconds:.0f} | {t.per_core:.0f} | "
            f"{ours.per_core / t.per_core:.2f}x | {pixels.get(t.step.name, '')} |"
        )
    two = next(t for t in timings if t.step.name.startswith("ours") and t.step.cores == 2)
    print(f"\nours, 2 workers vs 1: {ours.seconds / two.seconds:.2f}x faster (wall)")


if __name__ == "__main__":
    main()
