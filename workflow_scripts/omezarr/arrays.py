"""The plate's arrays: how they are declared, and how their chunks are written.

Arrays are blosc-zstd (bit-shuffled for integers) in either zarr format.
Chunks are written to their files in the calling thread, because zarr's
own write path passes every chunk between three threads (caller, event
loop, codec pool): on a busy machine each hand-off waits for a time slice,
and on a shared 2-core host ``array[...] = field`` ran at 40 % of the
speed of encoding the same chunks directly, a second worker process making
it slower still. A level's chunks are whole planes or the whole level, so
each is encoded with the blosc parameters the array's metadata declares and
written at the key the array's chunk-key encoding gives: the bytes zarr
would write (a test compares them). Sharded arrays keep zarr's path, which
owns the shard index.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numcodecs
import numpy as np
import zarr
from zarr.codecs import BloscCodec
from zarr.core.metadata import ArrayV2Metadata, ArrayV3Metadata

from workflow_scripts.errors import InputError
from workflow_scripts.omezarr.keys import AXES
from workflow_scripts.omezarr.options import ConversionOptions

SHUFFLES = {"bitshuffle": numcodecs.Blosc.BITSHUFFLE, "shuffle": numcodecs.Blosc.SHUFFLE}


def blosc(clevel: int, shuffle: str) -> numcodecs.Blosc:
    """The blosc-zstd codec both zarr formats of the plate are declared with."""
    return numcodecs.Blosc(cname="zstd", clevel=clevel, shuffle=SHUFFLES[shuffle], blocksize=0)


def write_chunks(array: zarr.Array, data: np.ndarray, codec: numcodecs.Blosc) -> None:
    """Write (c, y, x) ``data`` into an unsharded array chunked by plane (1, y, x) or whole (c, y, x)."""
    planes = array.chunks[0]
    if array.shape != data.shape or array.chunks[1:] != data.shape[1:] or planes not in (1, data.shape[0]):
        raise InputError(f"{array.path}: chunks {array.chunks} are neither planes nor the whole of {data.shape}")
    if array.shards is not None:
        raise InputError(f"{array.path}: sharded arrays are written through zarr")
    directory = Path(array.store.root) / array.path
    keys = [array.metadata.encode_chunk_key((index, 0, 0)) for index in range(data.shape[0] // planes)]
    _make_folders(directory, keys)
    little_endian = data.astype(data.dtype.newbyteorder("<"), copy=False)
    for index, key in enumerate(keys):
        chunk = np.ascontiguousarray(little_endian[index * planes : (index + 1) * planes])
        (directory / key).write_bytes(codec.encode(chunk))


def _make_folders(directory: Path, keys: list[str]) -> None:
    """Create the folders of chunk keys like ``c/3/0/0`` with one mkdir each.

    File-system metadata is slow on shared hosts; ``mkdir(parents=True)``
    per chunk made half again as many calls.
    """
    made: set[str] = set()
    for key in keys:
        parts = key.split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            folder = "/".join(parts[:depth])
            if folder not in made:
                (directory / folder).mkdir(exist_ok=True)
                made.add(folder)


def create_array(
    group: zarr.Group,
    name: str,
    shape: tuple[int, ...],
    chunks: tuple[int, ...],
    options: ConversionOptions,
    shards: tuple[int, ...] | None = None,
    dtype: str = "uint16",
    dimension_names: tuple[str, ...] | None = AXES,
) -> zarr.Array:
    """An array in the plate's zarr format with blosc-zstd (bit-shuffled for integers)."""
    shuffle = "bitshuffle" if np.dtype(dtype).kind == "u" else "shuffle"
    common = {"name": name, "shape": shape, "chunks": chunks, "dtype": dtype, "fill_value": 0}
    if options.zarr_format == 3:
        codec = BloscCodec(cname="zstd", clevel=options.compression_level, shuffle=shuffle, blocksize=0)
        return group.create_array(**common, compressors=codec, shards=shards, dimension_names=dimension_names)
    codec = blosc(options.compression_level, shuffle)
    return group.create_array(**common, compressors=codec, chunk_key_encoding={"name": "v2", "separator": "/"})


@lru_cache(maxsize=16)
def level_metadata(level: int, shape: tuple[int, ...], options: ConversionOptions) -> ArrayV2Metadata | ArrayV3Metadata:
    """Metadata of one pyramid level's array, made once per shape by creating it in memory."""
    scratch = zarr.open_group(zarr.storage.MemoryStore(), mode="w", zarr_format=options.zarr_format)
    shards = shape if options.shard_per_field else None
    return create_array(scratch, "level", shape, level_chunks(level, shape), options, shards).metadata


def level_chunks(level: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    """One channel of the whole field at full resolution; the whole (small) level below it.

    Level 0 is read one channel at a time; lower levels are a few hundred
    kilobytes, and one object per level spares the file system a dozen.
    """
    return (1, *shape[1:]) if level == 0 else shape
