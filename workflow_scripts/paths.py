"""Where things live on disk: one function per kind of path.

Both the rules and the stage code use these, so a layout change happens in
one place.
"""

from __future__ import annotations

from pathlib import Path


def plate_dir(results_dir: str | Path, dataset: str, source: str, batch: str, plate: str) -> Path:
    """Per-plate output folder ``{results_dir}/plates/{dataset}/{source}/{batch}/{plate}``."""
    return Path(results_dir) / "plates" / dataset / source / batch / plate


def cache_path(cache_dir: str | Path, bucket: str, key: str) -> Path:
    """Local copy of an S3 object: the cache mirrors ``bucket/key``.

    The cache is not a Snakemake output, so a failed or killed job never
    deletes objects that were already downloaded and verified.
    """
    if ".." in Path(key).parts:
        raise ValueError(f"refusing S3 key with '..': {key!r}")
    return Path(cache_dir) / bucket / key


def collection_dir(results_dir: str | Path, features: str) -> Path:
    """Cross-plate folder ``{results_dir}/collection/{features}``."""
    return Path(results_dir) / "collection" / features
