"""Metadata column names that a case-insensitive reader cannot confuse.

Platemaps and metadata tables spell the same column differently (``moa`` and
``MoA``; LINCS plates carry ``Metadata_plate_map_name`` from the platemap and
``Metadata_Plate_Map_Name`` from the barcode table). Parquet readers, R and
SQL engines may fold case, so every group of names equal but for case becomes
one column: the project's spelling where it has one, else the first seen.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from workflow_scripts.errors import InputError

PREFIX = "Metadata_"
# The project's spelling of names tables often write in another case.
CANONICAL = {
    name.lower(): name
    for name in (
        "Metadata_Source",
        "Metadata_Batch",
        "Metadata_Plate",
        "Metadata_Well",
        "Metadata_Perturbation",
        "Metadata_PertType",
        "Metadata_Target",
        "Metadata_MoA",
        "Metadata_JCP2022",
    )
}


def metadata_name(column: str) -> str:
    """``moa`` -> ``Metadata_moa``; a name with the prefix is kept."""
    return column if column.startswith(PREFIX) else f"{PREFIX}{column}"


def feature_columns(columns: Iterable[str]) -> list[str]:
    """The feature columns among ``columns`` (a table's names, or a DataFrame): every name
    without the ``Metadata_`` prefix (pycytominer convention)."""
    return [c for c in columns if not c.startswith(PREFIX)]


def find_column(columns: Iterable[str], name: str) -> str | None:
    """The column that is ``name`` (prefixed where it lacks ``Metadata_``) but for case, or None."""
    wanted = metadata_name(name).lower()
    return next((c for c in columns if c.lower() == wanted), None)


def canonical_name(spellings: list[str]) -> str:
    """The one name for spellings that differ only in case."""
    return CANONICAL.get(spellings[0].lower(), spellings[0])


def merge_case_variants(table: pd.DataFrame, where: str) -> pd.DataFrame:
    """``table`` with each group of names equal but for case merged into one column.

    Values are merged where they agree or only one is set; a row where two
    spellings disagree is an error naming ``where``, both columns and the row.
    The merged column takes the place of its first spelling.
    """
    groups: dict[str, list[str]] = {}
    for column in table.columns:
        groups.setdefault(column.lower(), []).append(column)
    renames = {spellings[0]: canonical_name(spellings) for spellings in groups.values()}
    merged = table.copy()
    for spellings in groups.values():
        first = spellings[0]
        for other in spellings[1:]:
            merged[first] = _agreeing(merged[first], merged.pop(other), first, other, where)
    return merged.rename(columns=renames)


def _agreeing(kept: pd.Series, other: pd.Series, kept_name: str, other_name: str, where: str) -> pd.Series:
    """One column from two that must agree wherever both are set."""
    both = kept.notna() & other.notna() & (kept.astype("string") != "") & (other.astype("string") != "")
    clash = both & (kept.astype("string") != other.astype("string"))
    if clash.any():
        row = clash.idxmax()
        raise InputError(
            f"{where}: columns {kept_name!r} and {other_name!r} differ only in case but disagree "
            f"({int(clash.sum())} row(s), first: {kept[row]!r} vs {other[row]!r})"
        )
    empty = kept.isna() | (kept.astype("string") == "")
    return kept.where(~empty, other)
