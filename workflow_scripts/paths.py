"""Where a fetched S3 object lives in the local cache."""

from __future__ import annotations

from pathlib import Path


def cache_path(cache_dir: str | Path, bucket: str, key: str) -> Path:
    """Local copy of an S3 object: the cache mirrors ``bucket/key``.

    The cache is not a Snakemake output, so a failed or killed job never
    deletes objects that were already downloaded and verified.
    """
    if ".." in Path(key).parts:
        raise ValueError(f"refusing S3 key with '..': {key!r}")
    return Path(cache_dir) / bucket / key
