"""The profiles stage: ``python -m workflow_scripts.profiles`` (see ``workflow_scripts.stage``).

One job per plate, for every feature set in ``features``: fetches the
plate's platemap and writes its wells to ``--output platemap=``
(``fetch/platemap.parquet``); for each feature set ``F`` reads ``--input
wells_F=`` (the plate's ``F/wells.parquet``) and, when
``normalization.adjust`` has ``wellpos``, ``--input batch_wells_F=`` once per
plate of the plate's batch (their ``wells.parquet`` of the same feature set;
the plate's own may be among them), and writes ``--output profiles_F=``
(``profiles/F.parquet``) and ``--output annotated_F=``
(``profiles/F_annotated.parquet``: the same rows annotated but not
normalized, which drift and the report read). Settings: ``annotation``,
``normalization``, ``features``, ``plates`` and ``dataset`` (the plate
table's own columns, e.g. ``Metadata_PlateType``, are stamped on the
profiles), and ``gallery``, ``fetch``, ``cache_dir`` for the platemap and
extra tables on S3.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

from workflow_scripts.fetch.platemap import fetch_platemap, fetch_tables
from workflow_scripts.plates import plate_columns
from workflow_scripts.profiles.annotate import Annotated, NamedTable, annotate_profiles
from workflow_scripts.profiles.columns import feature_columns
from workflow_scripts.profiles.inputs import read_batch, read_wells
from workflow_scripts.profiles.normalize import normalize_plate
from workflow_scripts.profiles.table import profile_table
from workflow_scripts.provenance import package_versions, write_table
from workflow_scripts.stage import StageCall, run_stage

STAGE = "profiles"
VERSIONED_PACKAGES = ("workflow_scripts", "numpy", "pandas", "scipy", "pyarrow")


def profiles(call: StageCall) -> None:
    """Annotate and normalize one plate's well profiles of every feature set.

    The platemap and the extra tables are fetched once for all feature sets.
    """
    plate, settings = call.plate, call.settings
    annotation = settings["annotation"]
    platemap_path = call.output("platemap")
    fetch_platemap(plate, settings, platemap_path)
    platemap = NamedTable(str(platemap_path), pd.read_parquet(platemap_path))
    controls_at = annotation["controls"]["table"]
    sources = [*annotation["extra_tables"], *([controls_at] if controls_at else [])]
    tables = [NamedTable(source, table) for source, table in zip(sources, fetch_tables(sources, settings))]
    extra, controls = (tables[:-1], tables[-1]) if controls_at else (tables, None)
    columns = plate_columns(settings["plates"], settings["dataset"], plate)
    for features in settings["features"]:
        wells = stamp_plate_columns(read_wells(call.input(f"wells_{features}"), plate), columns)
        annotated = annotate_profiles(wells, platemap, extra, controls, annotation, plate.plate)
        write_profiles(call, features, wells, annotated)


def write_profiles(call: StageCall, features: str, wells: pd.DataFrame, annotated: Annotated) -> None:
    """One feature set's annotated profiles, and the same normalized against the plate's controls."""
    plate, settings = call.plate, call.settings
    names = feature_columns(annotated.table)
    batch = None
    if "wellpos" in settings["normalization"]["adjust"]:
        batch = read_batch(call.inputs.get(f"batch_wells_{features}", []), wells, names, plate)
    normalized = normalize_plate(annotated.table, names, settings["normalization"], plate.plate, batch)
    metadata = pa.Table.from_pandas(annotated.table.drop(columns=names), preserve_index=False)
    provenance = {
        "plate": call.plate_id,
        "features": features,
        "inputs": {name: [str(p) for p in paths] for name, paths in call.inputs.items()},
        "annotation": annotated.report,
        "normalization": normalized.report,
        "versions": package_versions(VERSIONED_PACKAGES),
    }
    raw = annotated.table[names].to_numpy(dtype="float64")
    write_table(profile_table(metadata, names, raw), call.output(f"annotated_{features}"), STAGE, provenance)
    write_table(
        profile_table(metadata, names, normalized.values), call.output(f"profiles_{features}"), STAGE, provenance
    )


def stamp_plate_columns(wells: pd.DataFrame, columns: dict[str, str]) -> pd.DataFrame:
    """The plate table's columns (``Metadata_PlateType``…) as text, after the plate keys."""
    stamped = wells.copy()
    at = list(stamped.columns).index("Metadata_Plate") + 1
    for offset, (name, value) in enumerate(columns.items()):
        if name not in stamped.columns:
            stamped.insert(at + offset, name, pd.Series(value, index=stamped.index, dtype="string"))
    return stamped


def main(argv: list[str] | None = None) -> int:
    return run_stage(STAGE, {"profiles": profiles}, argv)


if __name__ == "__main__":
    raise SystemExit(main())
