"""The gallery's single-cell SQLite layout, as cytominer-database and
pycytominer's ``collate`` leave it.

Readers use the names to find features; the demo gallery and the synthetic
benchmark backends use the writer, so everything this project writes can be
read by pycytominer ``SingleCells`` with its default arguments.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping, Sequence

from workflow_scripts.errors import InputError

COMPARTMENTS: tuple[str, ...] = ("Cells", "Cytoplasm", "Nuclei")
# cytominer-database numbers each ingested table; backends written here have one.
TABLE_NUMBER = "1"

# Object-linking columns: which parent object a row belongs to. pycytominer
# renames the cytoplasm's links to Metadata_* and so never aggregates them;
# the cell's link to its nucleus stays a feature there, and so it does here.
PARENT_COLUMNS: Mapping[str, tuple[str, ...]] = {
    "Cells": ("Cells_Parent_Nuclei",),
    "Cytoplasm": ("Cytoplasm_Parent_Cells", "Cytoplasm_Parent_Nuclei"),
    "Nuclei": (),
}
NOT_FEATURES = frozenset(("Cytoplasm_Parent_Cells", "Cytoplasm_Parent_Nuclei"))

# cytominer-database prefixes every Image column with "Image_"; collate adds
# the unprefixed Metadata_* columns that SingleCells groups by.
IMAGE_COLUMNS: tuple[str, ...] = (
    "TableNumber",
    "ImageNumber",
    "Image_Metadata_Plate",
    "Image_Metadata_Well",
    "Image_Metadata_Site",
    "Metadata_Plate",
    "Metadata_Well",
    "Metadata_Site",
)


def metadata_column(columns: Sequence[str], name: str, where: str) -> str:
    """The Image column of one metadata item (``Well``, ``Site``): collate's
    unprefixed ``Metadata_{name}`` where present, else cytominer-database's
    ``Image_Metadata_{name}``."""
    for column in (f"Metadata_{name}", f"Image_Metadata_{name}"):
        if column in columns:
            return column
    raise InputError(f"{where}: neither Metadata_{name} nor Image_Metadata_{name} column")


def feature_columns(compartment: str, columns: Iterable[str]) -> list[str]:
    """The columns of a compartment table that are aggregated, in table order."""
    prefix = f"{compartment}_"
    return [c for c in columns if c.startswith(prefix) and c not in NOT_FEATURES]


def quote(name: str) -> str:
    """An SQL identifier, quoted so that any column name is safe."""
    return '"' + name.replace('"', '""') + '"'


def create_tables(con: sqlite3.Connection, features: Mapping[str, Sequence[str]]) -> None:
    """Create the Image table and one table per compartment.

    ``features`` maps each compartment to its feature names, each starting
    with the compartment prefix.
    """
    image = ", ".join(f"{quote(c)} {'BIGINT' if c == 'ImageNumber' else 'TEXT'}" for c in IMAGE_COLUMNS)
    con.execute(f"CREATE TABLE Image ({image})")
    for compartment in COMPARTMENTS:
        names = features[compartment]
        wrong = [n for n in names if not n.startswith(f"{compartment}_")]
        if wrong:
            raise InputError(f"{compartment} features must start with '{compartment}_': {wrong[:3]}")
        columns = ["TableNumber TEXT", "ImageNumber BIGINT", "ObjectNumber BIGINT"]
        columns += [f"{quote(c)} BIGINT" for c in PARENT_COLUMNS[compartment]]
        columns += [f"{quote(c)} FLOAT" for c in names]
        con.execute(f"CREATE TABLE {compartment} ({', '.join(columns)})")


def image_row(table_number: str, image_number: int, plate: str, well: str, site: str) -> tuple:
    """One Image row in ``IMAGE_COLUMNS`` order."""
    return (table_number, image_number, plate, well, site, plate, well, site)


def insert_images(con: sqlite3.Connection, rows: Iterable[tuple]) -> None:
    """Insert Image rows made by ``image_row``."""
    marks = ", ".join("?" * len(IMAGE_COLUMNS))
    con.executemany(f"INSERT INTO Image VALUES ({marks})", rows)


def insert_objects(
    con: sqlite3.Connection, compartment: str, table_number: str, rows: Iterable[Sequence[float]]
) -> None:
    """Insert rows of (ImageNumber, ObjectNumber, parents..., features...) of one TableNumber.

    NaN is stored as NULL, as SQLite does with every NaN.
    """
    width = len(con.execute(f"SELECT * FROM {compartment} LIMIT 0").description)
    table = "'" + table_number.replace("'", "''") + "'"
    con.executemany(f"INSERT INTO {compartment} VALUES ({table}, {', '.join('?' * (width - 1))})", rows)


def create_indexes(con: sqlite3.Connection) -> None:
    """The indexes collate creates, through which readers stream well by well."""
    con.execute("CREATE INDEX IF NOT EXISTS table_image_idx ON Image(TableNumber, ImageNumber)")
    for compartment in COMPARTMENTS:
        con.execute(
            f"CREATE INDEX IF NOT EXISTS table_image_object_{compartment.lower()}_idx "
            f"ON {compartment}(TableNumber, ImageNumber, ObjectNumber)"
        )
    con.execute("CREATE INDEX IF NOT EXISTS plate_well_image_idx ON Image(Metadata_Plate, Metadata_Well)")
