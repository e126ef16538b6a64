"""Every plate's profiles in one table, in a fixed order.

Plates are concatenated with pyarrow (no pandas copy of the whole
collection) and sorted by source, batch, plate and well, so the same plates
give the same file whatever order the rule lists them in. Metadata columns
are the union over plates (a plate without one has it empty); feature
columns must be the same on every plate: plates run through different
CellProfiler pipelines measure different features, and a silent
intersection would hide that. ``selection.keep_shared_columns`` opts into
the intersection, logged and recorded.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from workflow_scripts.errors import InputError
from workflow_scripts.profiles.annotate import KEYS
from workflow_scripts.profiles.columns import PREFIX

log = logging.getLogger("workflow_scripts.collection")


@dataclass
class Collected:
    """The collection and the record of what went into it."""

    table: pa.Table
    report: dict[str, Any]


@dataclass(frozen=True)
class PlateProfiles:
    """One plate's profiles table, named for messages."""

    label: str
    path: Path
    table: pa.Table

    @property
    def features(self) -> list[str]:
        return [c for c in self.table.column_names if not c.startswith(PREFIX)]


def collect_profiles(paths: Sequence[Path], keep_shared: bool) -> Collected:
    """One table of every plate's profiles, sorted by plate and well."""
    if not paths:
        raise InputError("collect: no plate selected")
    plates = sorted((read_plate(path) for path in paths), key=lambda p: p.label)
    repeated = [a.label for a, b in pairwise(plates) if a.label == b.label]
    if repeated:
        raise InputError(f"collect: plate(s) {', '.join(repeated)} given more than once")
    features = _union(p.features for p in plates)
    present = [set(p.features) for p in plates]
    shared = [f for f in features if all(f in names for names in present)]
    dropped = [f for f in features if f not in set(shared)]
    if dropped and not keep_shared:
        raise InputError(describe_difference(plates, features))
    if dropped:
        log.warning("keeping the %d feature columns every plate has; dropping %d others", len(shared), len(dropped))
    metadata = _union([c for c in p.table.column_names if c.startswith(PREFIX)] for p in plates)
    kept = set(metadata) | set(shared)
    parts = [p.table.select([c for c in p.table.column_names if c in kept]) for p in plates]
    try:
        table = pa.concat_tables(parts, promote_options="permissive")
    except pa.ArrowException as error:
        raise InputError(f"collect: plates disagree on a metadata column's type: {error}") from error
    table = table.select(metadata + shared).sort_by([(key, "ascending") for key in KEYS])
    report = {
        "plates": [{"plate": p.label, "path": str(p.path), "wells": p.table.num_rows} for p in plates],
        "features": len(shared),
        "keep_shared_columns": keep_shared,
        "dropped_columns": dropped,
    }
    log.info("collected %d plates, %d wells, %d features", len(plates), table.num_rows, len(shared))
    return Collected(table, report)


def read_plate(path: Path) -> PlateProfiles:
    """A plate's profiles, labelled ``source/batch/plate``; it must hold one plate."""
    table = pq.read_table(path)
    missing = [key for key in KEYS if key not in table.column_names]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)}")
    labels = {"/".join(row) for row in zip(*(table.column(key).cast(pa.string()).to_pylist() for key in KEYS[:3]))}
    if len(labels) != 1:
        raise InputError(f"{path}: holds {len(labels)} plates, not one")
    return PlateProfiles(labels.pop(), Path(path), table)


def describe_difference(plates: Sequence[PlateProfiles], features: Sequence[str]) -> str:
    """Which plates lack which feature columns, grouped by what they lack."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for plate in plates:
        present = set(plate.features)
        groups.setdefault(tuple(f for f in features if f not in present), []).append(plate.label)
    parts = [
        f"plate(s) {', '.join(labels)} lack {len(lacking)} ({', '.join(lacking[:5])}{', ...' if len(lacking) > 5 else ''})"
        for lacking, labels in groups.items()
        if lacking
    ]
    return (
        f"collect: plates disagree on their {len(features)} feature columns (different CellProfiler pipelines?): "
        + "; ".join(parts)
        + ". Set selection.keep_shared_columns to keep only the columns every plate has."
    )


def _union(columns: Iterable[Iterable[str]]) -> list[str]:
    """Every name, in the order first seen."""
    return list(dict.fromkeys(name for group in columns for name in group))
