"""The report's inputs: the cross-plate tables named on the command line, and each plate's files.

Cross-plate inputs are named ``kpis``, ``selected_method``, ``drift`` and
``corrected`` (or those names with ``_{features}`` after them) and told apart
by their path, ``collection/{features}/...`` (``corrected/{method}.parquet``
under it), so the order they come in does not matter. Per-plate files are
found from the plate table with ``paths.plate_dir``, under the folder that
holds the cross-plate inputs: thousands of plates' paths would not fit on a
command line, so the rule declares per-plate inputs (to order the jobs) but
does not pass them. Every file may be absent; the
report then says so where it would have shown it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from workflow_scripts import paths as layout
from workflow_scripts.errors import InputError
from workflow_scripts.paths import plate_dir

CROSS_PLATE_INPUTS = ("kpis", "selected_method", "drift")
CORRECTED = "corrected"


@dataclass
class CollectionInputs:
    """One feature set's cross-plate inputs; None where not given."""

    features: str
    kpis: Path | None = None
    selected_method: Path | None = None
    drift: Path | None = None
    corrected: dict[str, Path] = field(default_factory=dict)


@dataclass(frozen=True)
class PlateFiles:
    """Where one plate's files are, and its name in the plate table."""

    dataset: str
    source: str
    batch: str
    plate: str
    plate_type: str
    folder: Path

    @property
    def qc_fields(self) -> Path:
        return self.folder / "qc" / "fields.parquet"

    @property
    def qc_folder(self) -> Path:
        return self.folder / "qc"

    @property
    def dino_wells(self) -> Path:
        return self.folder / "dino" / "wells.parquet"

    def normalized(self, features: str) -> Path:
        return self.folder / "profiles" / f"{features}.parquet"

    def annotated(self, features: str) -> Path:
        return self.folder / "profiles" / f"{features}_annotated.parquet"


def collection_inputs(
    inputs: Mapping[str, list[Path]], features: Sequence[str], methods: Sequence[str]
) -> dict[str, CollectionInputs]:
    """The named inputs per configured feature set; corrected tables in the config's method order."""
    found = {name: CollectionInputs(name) for name in features}
    for key, paths in inputs.items():
        name = next((n for n in (*CROSS_PLATE_INPUTS, CORRECTED) if key == n or key.startswith(f"{n}_")), None)
        for path in paths if name else []:
            if name == CORRECTED:
                _owner(found, path.parent.parent.name, key, path).corrected[path.stem] = path
            else:
                setattr(_owner(found, path.parent.name, key, path), name, path)
    order = {method: i for i, method in enumerate(methods)}
    for collection in found.values():
        collection.corrected = dict(
            sorted(collection.corrected.items(), key=lambda item: order.get(item[0], len(order)))
        )
    return found


def _owner(found: dict[str, CollectionInputs], features: str, name: str, path: Path) -> CollectionInputs:
    if features not in found:
        raise InputError(
            f"--input {name}={path}: expected a path under collection/{{features}}/ with features one of "
            f"{sorted(found)}, got {features!r}"
        )
    return found[features]


def results_root(collections: Mapping[str, CollectionInputs], results_dir: str | Path) -> Path:
    """The results folder as this job sees it: above ``collection/`` of the first cross-plate input."""
    for collection in collections.values():
        for path in (collection.kpis, collection.selected_method, collection.drift):
            if path is not None:
                return layout.results_root(path)
    return Path(results_dir)


def plate_files(plates: pd.DataFrame, results_dir: str | Path) -> list[PlateFiles]:
    """Each plate of the plate table with its folder under ``results_dir``."""
    return [
        PlateFiles(
            dataset=str(row["Metadata_Dataset"]),
            source=str(row["Metadata_Source"]),
            batch=str(row["Metadata_Batch"]),
            plate=str(row["Metadata_Plate"]),
            plate_type=str(row.get("Metadata_PlateType", "")),
            folder=plate_dir(results_dir, row),
        )
        for row in plates.to_dict("records")
    ]


def read_table(path: Path | None) -> pd.DataFrame | None:
    """A parquet table, or None where it was not given or is absent."""
    return pd.read_parquet(path) if path is not None and path.is_file() else None


def read_json(path: Path | None) -> dict | None:
    """A JSON file, or None where it was not given or is absent."""
    return json.loads(path.read_text()) if path is not None and path.is_file() else None


def absent(path: Path | None, what: str) -> str:
    """Why an input is missing, for the section that would have shown it."""
    if path is None:
        return f"{what}: not given to the report stage"
    return f"{what}: {path} not found"
