"""Synthetic single-cell backends in the gallery's SQLite layout.

Real backends are tens of GB and cannot be shipped; the stage is tested and
benchmarked on generated ones of any size instead. They carry what makes
aggregation hard to get exactly right: per-well shifts, ties (values
rounded), integer features, missing values (NULL), wells listed in the Image
table without any cell, and odd and even cell counts per well. Beside them,
``write_qc_fields`` writes the QC table that says which of their sites QC
excludes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from workflow_scripts.atomic import atomic_path
from workflow_scripts.cellprofiler.backend_schema import (
    COMPARTMENTS,
    PARENT_COLUMNS,
    TABLE_NUMBER,
    create_indexes,
    create_tables,
    image_row,
    insert_images,
    insert_objects,
)

ROWS_PER_INSERT = 20_000


def all_wells() -> list[str]:
    """A01 ... P24 of a 384-well plate, row by row."""
    return [f"{row}{col:02d}" for row in "ABCDEFGHIJKLMNOP" for col in range(1, 25)]


@dataclass(frozen=True)
class SyntheticPlate:
    """What to generate: ``features`` per compartment, cells spread over all
    wells but ``empty_wells``, ``missing`` the fraction of NULL values."""

    n_cells: int
    features: int
    plate: str = "SYN00001"
    sites: int = 4
    wells: Sequence[str] = tuple(all_wells())
    empty_wells: Sequence[str] = ("P24",)
    missing: float = 0.01
    seed: int = 0

    def feature_names(self, compartment: str) -> list[str]:
        """An integer area first (as CellProfiler stores it), then the float features."""
        return [f"{compartment}_AreaShape_Area"] + [
            f"{compartment}_Intensity_Synthetic_{j:04d}" for j in range(1, self.features)
        ]


def synthetic_sites(plate: SyntheticPlate) -> list[tuple[str, str]]:
    """(well, site) of every image of the backend, in ImageNumber order; sites count from 1."""
    return [(well, str(s + 1)) for well in plate.wells for s in range(plate.sites)]


def _images(plate: SyntheticPlate) -> list[tuple]:
    return [
        image_row(TABLE_NUMBER, number, plate.plate, well, site)
        for number, (well, site) in enumerate(synthetic_sites(plate), start=1)
    ]


def _cell_images(plate: SyntheticPlate, rng: np.random.Generator) -> np.ndarray:
    """ImageNumber of every cell, sorted, none in the empty wells."""
    usable = [i for i, well in enumerate(plate.wells) if well not in set(plate.empty_wells)]
    images = np.array([w * plate.sites + s + 1 for w in usable for s in range(plate.sites)])
    weights = rng.uniform(0.5, 1.5, len(images))
    return np.sort(rng.choice(images, size=plate.n_cells, p=weights / weights.sum()))


def _object_numbers(images: np.ndarray) -> np.ndarray:
    """1, 2, ... within each image (``images`` sorted)."""
    starts = np.r_[0, np.flatnonzero(np.diff(images)) + 1]
    first = np.repeat(starts, np.diff(np.r_[starts, len(images)]))
    return np.arange(len(images)) - first + 1


def _values(plate: SyntheticPlate, shift: np.ndarray, images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Cells x features: an integer area, then well-shifted values rounded to make ties."""
    values = shift[(images - 1) // plate.sites] + rng.normal(0, 1, (len(images), plate.features))
    values = np.round(values * 100) / 100
    values[:, 0] = np.round(rng.gamma(9, 250, len(images)))
    values[rng.random(values.shape) < plate.missing] = np.nan
    return values


def _object_rows(plate: SyntheticPlate, compartment: str, images: np.ndarray, seed: int) -> Iterable[list]:
    rng = np.random.default_rng(seed)
    shift = rng.normal(0, 1, (len(plate.wells), plate.features))
    objects = _object_numbers(images)
    parents = len(PARENT_COLUMNS[compartment])
    for start in range(0, len(images), ROWS_PER_INSERT):
        part = slice(start, start + ROWS_PER_INSERT)
        keys = np.column_stack([images[part], objects[part]] + [objects[part]] * parents)
        yield from np.hstack([keys, _values(plate, shift, images[part], rng)]).tolist()


def write_synthetic_backend(path: str | Path, plate: SyntheticPlate) -> Path:
    """Write the backend atomically; returns its path."""
    path = Path(path)
    rng = np.random.default_rng(plate.seed)
    images = _cell_images(plate, rng)
    with atomic_path(path) as partial:
        with sqlite3.connect(partial) as con:
            con.execute("PRAGMA journal_mode = OFF")
            con.execute("PRAGMA synchronous = OFF")
            create_tables(con, {c: plate.feature_names(c) for c in COMPARTMENTS})
            insert_images(con, _images(plate))
            for offset, compartment in enumerate(COMPARTMENTS):
                insert_objects(con, compartment, TABLE_NUMBER, _object_rows(plate, compartment, images, plate.seed + 1 + offset))
            create_indexes(con)
        con.close()
    return path


def write_qc_fields(
    path: str | Path, plate: str, sites: Iterable[tuple[str, str]], excluded: Collection[tuple[str, str]] = ()
) -> Path:
    """A ``qc/fields.parquet`` with the columns later stages read: one row per
    (well, site), fields numbered per well from 0, ``qc_excluded`` for ``excluded``."""
    rows = pd.DataFrame(list(sites), columns=["Metadata_Well", "Metadata_Site"], dtype="string")
    flagged = set(excluded)
    table = pd.DataFrame(
        {
            "Metadata_Plate": pd.Series([plate] * len(rows), dtype="string"),
            "Metadata_Well": rows["Metadata_Well"],
            "Metadata_Site": rows["Metadata_Site"],
            "Metadata_Field": rows.groupby("Metadata_Well").cumcount().astype("int64"),
            "qc_excluded": pd.Series([site in flagged for site in rows.itertuples(index=False, name=None)], dtype=bool),
        }
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(path)
    return path
