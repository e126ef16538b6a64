"""The plate's arrays: how they are declared, and how their metadata and chunks are written.

Arrays are blosc-zstd (bit-shuffled for integers) in either zarr format.
A field's metadata documents and chunks are written as files in the
calling thread rather than through zarr's API, because every zarr call
passes its work between threads (caller, event loop, codec pool): on a
busy machine each hand-off waits for a time slice, and on a shared 2-core
host ``array[...] = field`` ran at 40 % of the speed of encoding the same
chunks directly, while creating a field's four nodes and its attributes
through zarr cost a tenth of the conversion. The files hold the bytes zarr
would write (tests compare them): metadata serialised by zarr's own
metadata classes, each chunk (a whole plane or the whole level) encoded
with the blosc parameters the metadata declares, at the key the array's
chunk-key encoding gives. Sharded arrays keep zarr's write path, which
owns the shard index.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numcodecs
import numpy as np
import zarr
from zarr.codecs import BloscCodec, ShardingCodec
from zarr.core.buffer import default_buffer_prototype
from zarr.core.group import GroupMetadata
from zarr.core.metadata import ArrayV2Metadata, ArrayV3Metadata

from workflow_scripts.errors import InputError
from workflow_scripts.omezarr.keys import AXES
from workflow_scripts.omezarr.options import ConversionOptions

SHUFFLES = {"bitshuffle": numcodecs.Blosc.BITSHUFFLE, "shuffle": numcodecs.Blosc.SHUFFLE}


def blosc(clevel: int, shuffle: str) -> numcodecs.Blosc:
    """The blosc-zstd codec both zarr formats of the plate are declared with."""
    return numcodecs.Blosc(cname="zstd", clevel=clevel, shuffle=SHUFFLES[shuffle], blocksize=0)


Metadata = GroupMetadata | ArrayV2Metadata | ArrayV3Metadata


def write_metadata(directory: Path, metadata: Metadata) -> None:
    """Create the node ``directory`` with its metadata documents, serialised as zarr serialises them.

    ``zarr.json`` in zarr v3; ``.zgroup`` or ``.zarray`` and ``.zattrs`` in v2.
    """
    directory.mkdir(exist_ok=True)
    for key, document in metadata.to_buffer_dict(default_buffer_prototype()).items():
        (directory / key).write_bytes(document.to_bytes())


def write_chunks(
    directory: Path, metadata: ArrayV2Metadata | ArrayV3Metadata, data: np.ndarray, codec: numcodecs.Blosc
) -> None:
    """Write (c, y, x) ``data`` as the chunks of the unsharded array at ``directory``, chunked by plane or whole."""
    chunks = metadata.chunks
    planes = chunks[0]
    if metadata.shape != data.shape or chunks[1:] != data.shape[1:] or planes not in (1, data.shape[0]):
        raise InputError(f"{directory}: chunks {chunks} are neither planes nor the whole of {data.shape}")
    if isinstance(metadata, ArrayV3Metadata) and isinstance(metadata.codecs[0], ShardingCodec):
        raise InputError(f"{directory}: sharded arrays are written through zarr")
    keys = [metadata.encode_chunk_key((index, 0, 0)) for index in range(data.shape[0] // planes)]
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
