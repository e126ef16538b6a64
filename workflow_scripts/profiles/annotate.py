"""A plate's well profiles joined to what their wells hold.

The annotation starts from the plate's keys (``Metadata_Source``,
``Metadata_Batch``, ``Metadata_Plate``, ``Metadata_Well``); the platemap and
then each extra table, in the configured order, is left-joined on the
``Metadata_`` columns it shares with the annotation so far (names compared
without case; a table's columns get the prefix where they lack it). So
JUMP's ``well.csv.gz`` joins on source, plate and well, and its
``compound.csv.gz`` then on ``Metadata_JCP2022``.

An empty cell of a table is a value while joining: JUMP-Target's metadata
describe the DMSO wells, whose ``broad_sample`` is empty in the platemap, by
a row whose ``broad_sample`` is empty (``NA``). A well a table did not match
has no value at all, and never matches an empty cell of a later table, so a
well missing from the platemap cannot pick up the DMSO row. Unmatched wells
are kept with empty annotations, counted and named per table.

``Metadata_Perturbation`` is the first non-empty of
``annotation.perturbation_columns``; ``Metadata_PertType`` comes from
``controls``; ``Metadata_Target`` and ``Metadata_MoA`` are the columns so
named in any case. Every annotation column is text, empty where unknown.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from workflow_scripts.errors import InputError
from workflow_scripts.profiles import controls
from workflow_scripts.profiles.columns import PREFIX, feature_columns, find_column, merge_case_variants, metadata_name

log = logging.getLogger("workflow_scripts.profiles")

KEYS = ("Metadata_Source", "Metadata_Batch", "Metadata_Plate", "Metadata_Well")
PERTURBATION, PERT_TYPE = "Metadata_Perturbation", "Metadata_PertType"


@dataclass(frozen=True)
class NamedTable:
    """A table and where it came from, for messages and provenance."""

    name: str
    table: pd.DataFrame


@dataclass
class Annotated:
    """The annotated profiles and the record of how they were annotated."""

    table: pd.DataFrame
    report: dict[str, Any] = field(default_factory=dict)


def annotate_profiles(
    wells: pd.DataFrame,
    platemap: NamedTable,
    extra: Sequence[NamedTable],
    controls_table: NamedTable | None,
    settings: Mapping[str, Any],
    plate: str,
) -> Annotated:
    """The plate's profiles with every annotation column before the features (``settings``: ``annotation``)."""
    missing = [key for key in KEYS if key not in wells.columns]
    if missing:
        raise InputError(f"plate {plate}: the well profiles lack {', '.join(missing)}")
    base = wells[list(KEYS)].astype("string").reset_index(drop=True)
    repeated = base["Metadata_Well"][base["Metadata_Well"].duplicated()]
    if len(repeated):
        raise InputError(f"plate {plate}: the well profiles list well(s) {', '.join(sorted(set(repeated)))} twice")
    annotation, unmatched = base, {}
    for source in (platemap, *extra):
        annotation, unmatched[source.name] = join_table(annotation, source, plate)
        if missed := unmatched[source.name]:
            log.warning(
                "plate %s: %d of %d wells not matched by %s, kept without its annotation: %s%s",
                plate, len(missed), len(base), source.name, ", ".join(missed[:10]), ", ..." if len(missed) > 10 else "",
            )  # fmt: skip
    annotation = annotation.replace("", pd.NA)
    annotation[PERTURBATION], used = first_set(annotation, settings["perturbation_columns"], plate)
    marks = convention_marks(annotation, controls_table, settings["controls"], plate)
    annotation[PERT_TYPE] = controls.pert_types(marks, annotation[PERTURBATION], annotation["Metadata_Well"], plate)
    table = attach(wells.reset_index(drop=True), annotation, plate)
    report = {
        "sources": [source.name for source in (platemap, *extra)],
        "controls_table": controls_table.name if controls_table else None,
        "wells": len(base),
        "unmatched_wells": {name: len(wells) for name, wells in unmatched.items()},
        "unmatched_well_names": {name: wells for name, wells in unmatched.items() if wells},
        "perturbation_columns": used,
        "pert_types": annotation[PERT_TYPE].fillna("none").value_counts().to_dict(),
        "controls_by_convention": {name: m.value_counts().to_dict() for name, m in marks.items()},
    }
    log.info("plate %s: %s", plate, ", ".join(f"{n} {kind}" for kind, n in sorted(report["pert_types"].items())))
    return Annotated(table, report)


def join_table(annotation: pd.DataFrame, source: NamedTable, plate: str) -> tuple[pd.DataFrame, list[str]]:
    """``annotation`` left-joined with one table on the columns they share; and the wells it missed.

    Rows of the table that share their keys yet differ elsewhere would give
    a well two annotations: an error naming the table and the keys.
    """
    table = merge_case_variants(source.table.rename(columns=metadata_name), source.name)
    table = table.rename(columns={c: find_column(annotation.columns, c) or c for c in table.columns})
    keys = [c for c in table.columns if c in annotation.columns]
    if not keys:
        raise InputError(
            f"plate {plate}: {source.name} shares no column with the annotation so far "
            f"({', '.join(annotation.columns)}); its columns: {', '.join(table.columns)}"
        )
    table = table.astype("string").fillna("")
    used = table.merge(annotation[keys].drop_duplicates(), on=keys).drop_duplicates()
    clash = used[used.duplicated(keys, keep=False)]
    if len(clash):
        first = ", ".join(f"{k}={clash.iloc[0][k]!r}" for k in keys)
        raise InputError(
            f"plate {plate}: {source.name} gives {clash[keys].drop_duplicates().shape[0]} key(s) of this plate "
            f"several different rows (first: {first}); a well cannot take two annotations"
        )
    joined = annotation.merge(used, on=keys, how="left", indicator=True)
    missed = joined.loc[joined["_merge"] == "left_only", "Metadata_Well"].astype(str).tolist()
    return joined.drop(columns="_merge"), missed


def first_set(annotation: pd.DataFrame, candidates: Sequence[str], plate: str) -> tuple[pd.Series, list[str]]:
    """Per well, the first candidate column with a value; an existing ``Metadata_Perturbation`` comes first."""
    columns = [c for name in (PERTURBATION, *candidates) if (c := find_column(annotation.columns, name))]
    columns = list(dict.fromkeys(columns))
    if not columns:
        log.warning("plate %s: none of annotation.perturbation_columns (%s) is annotated", plate, ", ".join(candidates))
        return pd.Series(pd.NA, index=annotation.index, dtype="string"), []
    value = annotation[columns[0]]
    for column in columns[1:]:
        value = value.fillna(annotation[column])
    return value.astype("string"), columns


def convention_marks(
    annotation: pd.DataFrame, controls_table: NamedTable | None, rule: Mapping[str, Any], plate: str
) -> dict[str, pd.Series]:
    """Each applicable convention's negcon / poscon / other marks, by name."""
    marks = {
        "pert_type": controls.pert_type_marks(annotation),
        "controls_table": (
            controls.table_marks(annotation, controls_table.table, controls_table.name, plate)
            if controls_table
            else None
        ),
        "config_rule": controls.rule_marks(annotation, rule, plate),
        PERT_TYPE: controls.kind(annotation[PERT_TYPE]) if PERT_TYPE in annotation.columns else None,
    }
    return {name: mark for name, mark in marks.items() if mark is not None}


def attach(wells: pd.DataFrame, annotation: pd.DataFrame, plate: str) -> pd.DataFrame:
    """The wells' own metadata, then the annotation, then the features.

    An annotation column named like one of the wells' own metadata (say a
    platemap column ``Object_Count``) would be ambiguous: an error naming both.
    """
    own = [c for c in wells.columns if c.startswith(PREFIX) and c not in KEYS]
    added = annotation.drop(columns=list(KEYS))
    for column in added.columns:
        if (same := find_column(own, column)) is not None:
            raise InputError(f"plate {plate}: annotation column {column!r} clashes with the profiles' own {same!r}")
    keys = wells[list(KEYS)].astype("string")
    return pd.concat([keys, wells[own], added.astype("string"), wells[feature_columns(wells)]], axis=1)
