"""Which wells are negative controls, positive controls and treatments.

Three conventions are read, whichever the annotation allows, and must agree:

- JUMP's ``pert_type`` column: ``negcon`` / ``poscon*`` directly (JUMP's
  ``orf.csv.gz``), or ``control`` with ``control_type`` ``negcon`` /
  ``poscon_*`` (JUMP-Target and CPJUMP1 platemaps and metadata);
- JUMP's ``perturbation_control.csv`` (``annotation.controls.table``):
  ``Metadata_pert_type`` by ``Metadata_JCP2022``;
- the config's rule: ``annotation.controls.column`` with its ``negcon`` and
  ``poscon`` values (e.g. ``DMSO``).

A well called a control whose kind no convention gives (``pert_type`` =
``control`` alone, JUMP's ``empty`` wells) is neither a treatment nor a
control: its ``Metadata_PertType`` stays empty and it is counted, so it
never silently joins the treatments or the normalization reference.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from workflow_scripts.errors import InputError
from workflow_scripts.profiles.columns import find_column

NEGCON, POSCON, TRT = "negcon", "poscon", "trt"
# A control of no known kind, or a well that holds no perturbation (JUMP's "empty").
OTHER, EMPTY = "other", "empty"
JCP2022, PERT_TYPE_COLUMN = "Metadata_JCP2022", "Metadata_pert_type"


def kind(values: pd.Series) -> pd.Series:
    """JUMP's vocabulary: ``negcon``; ``poscon``, ``poscon_cp``, ... -> poscon; ``empty`` -> other.

    Any other value (``trt``, blanks) says nothing: NA.
    """
    text = _lower(values)
    conditions = [text == NEGCON, text.str.startswith(POSCON), text == EMPTY]
    named = np.select([c.fillna(False).to_numpy(bool) for c in conditions], [NEGCON, POSCON, OTHER], "")
    return pd.Series(named, index=values.index, dtype="string").replace("", pd.NA)


def _lower(values: pd.Series) -> pd.Series:
    return values.astype("string").str.strip().str.lower()


def pert_type_marks(annotation: pd.DataFrame) -> pd.Series | None:
    """JUMP's ``pert_type`` (with ``control_type``) convention; None where the annotation has no ``pert_type``.

    ``control`` takes its kind from ``control_type``, and without one it is a control of no known kind.
    """
    pert_type = find_column(annotation.columns, "pert_type")
    if pert_type is None:
        return None
    control_type = find_column(annotation.columns, "control_type")
    detail = kind(annotation[control_type]).fillna(OTHER) if control_type else OTHER
    is_control = (_lower(annotation[pert_type]) == "control").fillna(False)
    return kind(annotation[pert_type]).mask(is_control, detail)


def table_marks(annotation: pd.DataFrame, controls: pd.DataFrame, where: str, plate: str) -> pd.Series:
    """The controls table's ``Metadata_pert_type`` of each well's ``Metadata_JCP2022``."""
    missing = [c for c in (JCP2022, PERT_TYPE_COLUMN) if c not in controls.columns]
    if missing:
        raise InputError(f"{where}: missing column(s) {', '.join(missing)}")
    key = find_column(annotation.columns, JCP2022)
    if key is None:
        raise InputError(
            f"plate {plate}: the controls table {where} is keyed by {JCP2022}, which the annotation lacks "
            "(join a table that gives it, e.g. JUMP's well.csv.gz, in annotation.extra_tables)"
        )
    lookup = controls[[JCP2022, PERT_TYPE_COLUMN]].dropna().drop_duplicates()
    repeated = lookup[JCP2022][lookup[JCP2022].duplicated()]
    if len(repeated):
        raise InputError(f"{where}: {JCP2022} {', '.join(sorted(set(repeated))[:5])} listed with several pert types")
    types = annotation[key].map(lookup.set_index(JCP2022)[PERT_TYPE_COLUMN])
    return kind(types)


def rule_marks(annotation: pd.DataFrame, rule: Mapping[str, Any], plate: str) -> pd.Series | None:
    """The config's rule: values of ``column`` that are negative or positive controls; None without a column."""
    if not rule["column"]:
        return None
    both = sorted(set(rule["negcon"]) & set(rule["poscon"]))
    if both:
        raise InputError(f"annotation.controls: {', '.join(both)} listed as both negcon and poscon")
    column = find_column(annotation.columns, rule["column"])
    if column is None:
        raise InputError(
            f"plate {plate}: annotation.controls.column {rule['column']!r} is not in the annotation "
            f"(columns: {', '.join(annotation.columns)})"
        )
    values = annotation[column].astype("string").str.strip()
    marks = np.select(
        [values.isin(rule["negcon"]).fillna(False), values.isin(rule["poscon"]).fillna(False)], [NEGCON, POSCON], ""
    )
    return pd.Series(marks, index=annotation.index, dtype="string").replace("", pd.NA)


def pert_types(marks: Mapping[str, pd.Series], perturbation: pd.Series, wells: pd.Series, plate: str) -> pd.Series:
    """``Metadata_PertType`` from every convention's marks: a control where any says so, else ``trt``
    where the well has a perturbation; empty for controls of no known kind and empty wells.

    A well one convention calls a negative control and another a positive
    one is an error naming the plate, the wells and the conventions.
    """
    table = pd.DataFrame(dict(marks), index=perturbation.index, dtype="string")
    negcon, poscon, other = ((table == value).fillna(False).any(axis=1) for value in (NEGCON, POSCON, OTHER))
    clash = negcon & poscon
    if clash.any():
        raise InputError(
            f"plate {plate}: well(s) {', '.join(wells[clash].head(5))} are negative controls by one convention "
            f"and positive by another ({', '.join(table.columns)})"
        )
    has_perturbation = perturbation.notna().to_numpy()
    types = np.select([negcon, poscon, other, has_perturbation], [NEGCON, POSCON, "", TRT], "")
    return pd.Series(types, index=perturbation.index, dtype="string").replace("", pd.NA)
