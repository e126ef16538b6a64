"""Well names: LoadData writes ``A01``, the NGFF plate stores ``A/1``.

Both the writer and the reader convert between the two, so the rule lives
here once.
"""

from __future__ import annotations

import re

ROWS = "ABCDEFGHIJKLMNOP"
MAX_COLUMN = 24
_WELL = re.compile(r"^([A-Pa-p])(\d{1,2})$")


def split_well(well: str) -> tuple[str, str]:
    """``'A01'`` -> ``('A', '1')``: NGFF row and column names, columns unpadded."""
    match = _WELL.match(well)
    if match is None or not 1 <= int(match.group(2)) <= MAX_COLUMN:
        raise ValueError(f"well {well!r} is not a 384-well plate position like 'A01'")
    return match.group(1).upper(), str(int(match.group(2)))


def join_well(row: str, column: str) -> str:
    """``('A', '1')`` -> ``'A01'``, the form every table of the project uses."""
    return f"{row}{int(column):02d}"


def well_sort_key(well: str) -> tuple[int, int]:
    """Row-major plate order (A01, A02, ..., B01), not string order."""
    row, column = split_well(well)
    return ROWS.index(row), int(column)
