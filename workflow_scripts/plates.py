"""The plate table: which plates a run covers.

JUMP's ``metadata/plate.csv.gz`` is accepted as it is. Every ``Metadata_*``
column is read as text because plate names can be all digits and must not
turn into integers (or lose leading zeros).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from workflow_scripts.errors import InputError
from workflow_scripts.fetch.gallery import PlateRef
from workflow_scripts.paths import plate_dir

KEY_COLUMNS = ["Metadata_Source", "Metadata_Batch", "Metadata_Plate"]
SELECT_COLUMNS = {
    "sources": "Metadata_Source",
    "batches": "Metadata_Batch",
    "plates": "Metadata_Plate",
    "plate_types": "Metadata_PlateType",
}


class PlateTableError(InputError):
    """The plate table or the selection is unusable."""


def read_metadata_csv(path: str | Path) -> pd.DataFrame:
    """Read a CSV (optionally gzipped) with every ``Metadata_*`` column as text."""
    header = pd.read_csv(path, nrows=0).columns
    dtypes = {c: "string" for c in header if c.startswith("Metadata_")}
    return pd.read_csv(path, dtype=dtypes, keep_default_na=False, na_values=[])


def read_plate_table(
    path: str | Path, dataset: str, select: Mapping[str, Sequence[str]] | None = None
) -> pd.DataFrame:
    """The selected plates with ``Metadata_Dataset`` filled in, one row each."""
    path = Path(path)
    if not path.is_file():
        raise PlateTableError(f"plate table not found: {path} (config key 'plates')")
    table = read_metadata_csv(path)
    missing = [c for c in KEY_COLUMNS if c not in table.columns]
    if missing:
        raise PlateTableError(f"plate table {path} lacks column(s) {missing}")
    table = _fill_dataset(table, dataset)
    _check_names(table, path)
    selected = apply_selection(table, select or {}, path)
    duplicated = selected.duplicated(["Metadata_Dataset", *KEY_COLUMNS])
    if duplicated.any():
        rows = selected.loc[duplicated, "Metadata_Plate"].tolist()
        raise PlateTableError(f"plate table {path} lists plate(s) {rows} more than once")
    return selected.reset_index(drop=True)


def plate_columns(path: str | Path, dataset: str, plate: PlateRef) -> dict[str, str]:
    """The plate table's own columns for one plate (``Metadata_PlateType`` and any others).

    Per-plate stages stamp them on the plate's profiles, so the cross-plate
    stages can keep plate types apart. The key columns are left out: the
    profiles already carry them.
    """
    table = read_plate_table(path, dataset)
    row = table[
        (table["Metadata_Dataset"] == plate.dataset)
        & (table["Metadata_Source"] == plate.source)
        & (table["Metadata_Batch"] == plate.batch)
        & (table["Metadata_Plate"] == plate.plate)
    ]
    if row.empty:
        raise PlateTableError(f"plate {plate.plate} ({plate.dataset}/{plate.source}/{plate.batch}) is not in {path}")
    extra = [c for c in row.columns if c.startswith("Metadata_") and c not in ("Metadata_Dataset", *KEY_COLUMNS)]
    return {column: str(row[column].iloc[0]) for column in extra}


def _fill_dataset(table: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Per-row ``Metadata_Dataset`` where given, else the config's ``dataset``."""
    table = table.copy()
    if "Metadata_Dataset" in table.columns:
        table["Metadata_Dataset"] = table["Metadata_Dataset"].mask(table["Metadata_Dataset"] == "", dataset)
    else:
        table["Metadata_Dataset"] = dataset
    table["Metadata_Dataset"] = table["Metadata_Dataset"].astype("string")
    return table


def _check_names(table: pd.DataFrame, path: Path) -> None:
    """Names become path components and S3 keys: non-empty, free of '/', without surrounding spaces.

    Spaces inside a name are kept (every path is quoted); a leading or
    trailing one is an editing slip that would send the plate to a key the
    gallery lacks, with a message whose plate name looks right.
    """
    for column in ["Metadata_Dataset", *KEY_COLUMNS]:
        names = table[column]
        for bad, problem in (
            (names.eq("") | names.str.contains("/", regex=False), "is empty or contains '/'"),
            (names.ne(names.str.strip()), "has leading or trailing whitespace"),
        ):
            if bad.any():
                row = int(bad.to_numpy().nonzero()[0][0])
                raise PlateTableError(f"plate table {path}, row {row + 2}: {column} {names.iloc[row]!r} {problem}")


def apply_selection(table: pd.DataFrame, select: Mapping[str, Sequence[str]], path: Path) -> pd.DataFrame:
    """Keep rows matching every non-empty ``select`` list; unknown values are errors.

    A value absent from the whole table is reported as unknown; values that
    exist but never occur together give the empty-selection error.
    """
    full = table
    for key, values in select.items():
        if not values:
            continue
        column = SELECT_COLUMNS[key]
        if column not in full.columns:
            raise PlateTableError(f"select.{key} needs column {column}, which plate table {path} lacks")
        wanted = [str(v) for v in values]
        unknown = sorted(set(wanted) - set(full[column]))
        if unknown:
            raise PlateTableError(f"select.{key}: {unknown} not found in column {column} of plate table {path}")
        table = table[table[column].isin(wanted)]
    if table.empty:
        raise PlateTableError(f"the selection {dict(select)} leaves no plate of plate table {path}")
    return table


def selected_plate_files(settings: Mapping, results_root: str | Path, relative: str) -> list[Path]:
    """``relative`` in the folder of every selected plate, in plate-table order.

    Cross-plate stages read every plate's files this way instead of taking
    their paths on the command line, which thousands of plates would
    overflow. ``settings`` holds the config keys ``plates``, ``dataset`` and
    ``select``.
    """
    table = read_plate_table(settings["plates"], settings["dataset"], settings["select"])
    return [plate_dir(results_root, row) / relative for row in table.to_dict("records")]
