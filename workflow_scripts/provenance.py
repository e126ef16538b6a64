"""How a stage's parquet table was made, carried in the file itself.

Each stage stores one JSON record under its own name in the parquet
key-value metadata, so a table read years later still says which inputs,
settings and package versions produced it.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from workflow_scripts.atomic import atomic_path
from workflow_scripts.errors import InputError


def package_versions(names: Sequence[str]) -> dict[str, str]:
    """Versions of the packages that shape the numbers, and of Python."""
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def write_table(table: pd.DataFrame | pa.Table, path: str | Path, stage: str, provenance: dict) -> Path:
    """Write ``table`` atomically, with ``provenance`` as JSON under the key ``stage``."""
    arrow = table if isinstance(table, pa.Table) else pa.Table.from_pandas(table, preserve_index=False)
    metadata = {**(arrow.schema.metadata or {}), stage.encode(): json.dumps(provenance, sort_keys=True).encode()}
    with atomic_path(path) as partial:
        pq.write_table(arrow.replace_schema_metadata(metadata), partial)
    return Path(path)


def read_provenance(path: str | Path, stage: str) -> dict:
    """The record a stage wrote into ``path``; an error naming the file if there is none."""
    metadata = pq.read_schema(path).metadata or {}
    if stage.encode() not in metadata:
        raise InputError(f"{path}: no '{stage}' provenance in the parquet metadata")
    return json.loads(metadata[stage.encode()])
