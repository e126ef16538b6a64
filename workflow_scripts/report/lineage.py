"""The run and its lineage: plates, package versions, the config, and which DINO weights were used.

Embeddings from an untrained network look like any others, so the report
reads the model each plate's ``dino/wells.parquet`` records and flags random
weights in red wherever DINO results are shown. A record without a
checkpoint sha256 is random weights (``ModelInfo.as_dict`` writes the two
together), which spares the report importing torch to read one constant.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import yaml

from workflow_scripts.errors import InputError
from workflow_scripts.provenance import package_versions, read_provenance
from workflow_scripts.report.inputs import CollectionInputs, PlateFiles

PACKAGES = (
    "numpy",
    "scipy",
    "pandas",
    "pyarrow",
    "scikit-learn",
    "harmonypy",
    "copairs",
    "scib-metrics",
    "umap-learn",
    "torch",
    "snakemake",
    "pycytominer",
    "matplotlib",
    "jinja2",
    "zarr",
    "workflow_scripts",
)


@dataclass(frozen=True)
class PlateQc:
    """One plate's line in the plates table."""

    plate: PlateFiles
    fields: int | None
    failed: int | None
    excluded: int | None
    anchor: str | None


@dataclass(frozen=True)
class ModelUse:
    """One model some plates were embedded with."""

    random_weights: bool
    description: str


@dataclass(frozen=True)
class DinoModel:
    """The weights behind the DINO embeddings, as the plates recorded them."""

    models: list[ModelUse]
    plates_without_record: list[str]

    @property
    def random_weights(self) -> bool:
        """True if any plate was embedded without a checkpoint."""
        return any(model.random_weights for model in self.models)


@dataclass(frozen=True)
class Versions:
    """Package versions: this report's environment, and those the stages recorded."""

    columns: list[str]
    rows: list[list[str]]


def plate_qc(plates: Sequence[PlateFiles], anchors: dict[PlateFiles, str]) -> list[PlateQc]:
    """Field counts of every plate, read from ``qc/fields.parquet`` (two columns only: there may be thousands)."""
    rows = []
    for plate in plates:
        fields = failed = excluded = None
        if plate.qc_fields.is_file():
            wanted = [c for c in ("qc_pass", "qc_excluded") if c in pq.read_schema(plate.qc_fields).names]
            table = pd.read_parquet(plate.qc_fields, columns=wanted)
            fields = pq.read_metadata(plate.qc_fields).num_rows
            failed = int((~table["qc_pass"]).sum()) if "qc_pass" in table else None
            excluded = int(table["qc_excluded"].sum()) if "qc_excluded" in table else None
        rows.append(PlateQc(plate, fields, failed, excluded, anchors.get(plate)))
    return rows


def dino_records(plates: Sequence[PlateFiles]) -> dict[PlateFiles, dict | None]:
    """Each plate's DINO provenance (from ``dino/wells.parquet``), None where it has none."""
    return {plate: _provenance(plate.dino_wells, "dino") for plate in plates}


def dino_model(records: dict[PlateFiles, dict | None]) -> DinoModel:
    """The distinct models the plates' DINO provenance names; random weights if any plate used them."""
    models: dict[ModelUse, None] = {}
    missing = []
    for plate, record in records.items():
        if record is None:
            missing.append(plate.plate)
        elif not record.get("checkpoint_sha256"):
            models[ModelUse(True, f"{record.get('arch', '?')}, no checkpoint (seed {record.get('seed')})")] = None
        else:
            sha = record["checkpoint_sha256"]
            models[
                ModelUse(False, f"{record.get('arch', '?')}, checkpoint {record.get('checkpoint')}, sha256 {sha}")
            ] = None
    return DinoModel(list(models), missing)


def versions(collections: Sequence[CollectionInputs], dino: dict[PlateFiles, dict | None]) -> Versions:
    """Versions here, beside those the correction and embedding stages wrote into their tables."""
    recorded: dict[str, dict[str, set[str]]] = {}
    for collection in collections:
        for path in collection.corrected.values():
            record = _provenance(path, "correct") or {}
            _merge(recorded.setdefault("correct stage", {}), record.get("package_versions", {}))
    for record in dino.values():
        _merge(recorded.setdefault("dino stage", {}), (record or {}).get("versions", {}))
    here = package_versions(PACKAGES)
    stages = [name for name in recorded if recorded[name]]
    names = list(here) + sorted({p for name in stages for p in recorded[name]} - set(here))
    rows = [
        [name, here.get(name, ""), *(", ".join(sorted(recorded[s].get(name, ()))) for s in stages)] for name in names
    ]
    return Versions(["package", "this report", *stages], rows)


def _provenance(path: Path, stage: str) -> dict | None:
    """What ``stage`` recorded in ``path``; None where the file or the record is missing (the report says so)."""
    if not path.is_file():
        return None
    try:
        return read_provenance(path, stage)
    except InputError:
        return None


def _merge(into: dict[str, set[str]], record: dict[str, str]) -> None:
    for name, version in record.items():
        into.setdefault(name, set()).add(str(version))


def config_yaml(settings: dict) -> str:
    """The whole config the run used, completed with the schema's defaults."""
    return yaml.safe_dump(settings, sort_keys=False, allow_unicode=True, default_flow_style=False)


def counts(plates: Sequence[PlateFiles], attribute: str) -> list[tuple[str, int]]:
    """Plates per source or per batch, in the plate table's order."""
    found: dict[str, int] = {}
    for plate in plates:
        key = getattr(plate, attribute)
        found[key] = found.get(key, 0) + 1
    return list(found.items())
