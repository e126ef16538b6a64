"""Where outputs and fetched S3 objects live: one definition for rules and stages."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

# A plate's folder under results_dir. The rules expand it with Snakemake
# wildcards; a cross-plate stage that reads every plate (the report) fills it
# from the plate table, so thousands of plates never travel on a command line.
PLATE_DIR = "plates/{dataset}/{source}/{batch}/{plate}"


def plate_dir(results_dir: str | Path, plate: Mapping[str, str]) -> Path:
    """The folder of one row of the plate table (``Metadata_Dataset``, ``..._Source``, ``_Batch``, ``_Plate``)."""
    return Path(results_dir) / PLATE_DIR.format(
        dataset=plate["Metadata_Dataset"],
        source=plate["Metadata_Source"],
        batch=plate["Metadata_Batch"],
        plate=plate["Metadata_Plate"],
    )


def cache_path(cache_dir: str | Path, bucket: str, key: str) -> Path:
    """Local copy of an S3 object: the cache mirrors ``bucket/key``.

    The cache is not a Snakemake output, so a failed or killed job never
    deletes objects that were already downloaded and verified.
    """
    if ".." in Path(key).parts:
        raise ValueError(f"refusing S3 key with '..': {key!r}")
    return Path(cache_dir) / bucket / key


def results_root(cross_plate_file: str | Path) -> Path:
    """The results folder as a job sees it: the folder above the ``collection/`` holding ``cross_plate_file``.

    Where Snakemake stages files from remote storage (the AWS Batch profile),
    a job's copies sit under a local mirror of the storage prefix rather than
    under ``results_dir``; every plate's files sit beside its collection there.
    """
    path = Path(cross_plate_file)
    for parent in path.parents:
        if parent.name == "collection":
            return parent.parent
    raise ValueError(f"{path} is not under a collection/ folder")
