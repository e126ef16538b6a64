"""Well names of a 384-well plate, in one place for every stage.

Tables use ``A01``; gallery sources also write ``A1`` or ``a01``; the NGFF
plate stores ``A/1``. Every conversion between these lives here.
"""

from __future__ import annotations

import re

from workflow_scripts.errors import InputError

ROWS = "ABCDEFGHIJKLMNOP"
MAX_COLUMN = 24
_WELL = re.compile(r"^([A-Pa-p])(\d{1,2})$")
_LOOSE_WELL = re.compile(r"^([A-Pa-p])0*(\d{1,2})$")


def normalize_well(well: object) -> str | None:
    """``A1`` / ``a01`` / ``A01`` → ``A01``; ``None`` when it is no 384-well position."""
    match = _LOOSE_WELL.match(str(well).strip())
    if match is None or not 1 <= int(match.group(2)) <= MAX_COLUMN:
        return None
    return f"{match.group(1).upper()}{int(match.group(2)):02d}"


def well_name(value: object, where: str) -> str:
    """Like :func:`normalize_well`, but a bad name is an error naming ``where`` it came from."""
    normalized = normalize_well(value)
    if normalized is None:
        raise InputError(f"{where}: {value!r} is not a well of a 384-well plate")
    return normalized


def split_well(well: str) -> tuple[str, str]:
    """``'A01'`` -> ``('A', '1')``: NGFF row and column names, columns unpadded."""
    match = _WELL.match(well)
    if match is None or not 1 <= int(match.group(2)) <= MAX_COLUMN:
        raise InputError(f"well {well!r} is not a 384-well plate position like 'A01'")
    return match.group(1).upper(), str(int(match.group(2)))


def join_well(row: str, column: str) -> str:
    """``('A', '1')`` -> ``'A01'``, the form every table of the project uses."""
    return f"{row}{int(column):02d}"


def well_sort_key(well: str) -> tuple[int, int]:
    """Row-major plate order (A01, A02, ..., B01), not string order."""
    row, column = split_well(well)
    return ROWS.index(row), int(column)
