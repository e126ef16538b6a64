"""The profiles stage: ``python -m workflow_scripts.profiles`` (see ``workflow_scripts.stage``).

Reads ``--input wells=`` (the plate's ``dino/wells.parquet`` or
``cellprofiler/wells.parquet``), ``--input platemap=``
(``fetch/platemap.parquet``) and, when ``normalization.adjust`` has
``wellpos``, ``--input batch_wells=`` once per plate of the plate's batch
(their ``wells.parquet`` of the same feature set; the plate's own may be
among them). Writes ``--output profiles=`` (``profiles/{features}.parquet``) and
``--output annotated=`` (``profiles/{features}_annotated.parquet``: the same
rows annotated but not normalized, which the report plots beside the
normalized ones);
``--wildcard features=dino|cellprofiler``. Settings: ``annotation``,
``normalization``, ``plates`` and ``dataset`` (the plate table's own
columns, e.g. ``Metadata_PlateType``, are stamped on the profiles), and
``gallery``, ``fetch``, ``cache_dir`` for extra tables on S3.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

from workflow_scripts.fetch.platemap import fetch_tables
from workflow_scripts.plates import plate_columns
from workflow_scripts.profiles.annotate import NamedTable, annotate_profiles
from workflow_scripts.profiles.columns import feature_columns
from workflow_scripts.profiles.inputs import read_batch, read_wells
from workflow_scripts.profiles.normalize import normalize_plate
from workflow_scripts.profiles.table import profile_table
from workflow_scripts.provenance import package_versions, write_table
from workflow_scripts.stage import StageCall, run_stage

STAGE = "profiles"
VERSIONED_PACKAGES = ("workflow_scripts", "numpy", "pandas", "scipy", "pyarrow")


def profiles(call: StageCall) -> None:
    """Annotate and normalize one plate's well profiles."""
    plate, settings = call.plate, call.settings
    annotation = settings["annotation"]
    wells = read_wells(call.input("wells"), plate)
    platemap = NamedTable(str(call.input("platemap")), pd.read_parquet(call.input("platemap")))
    controls_at = annotation["controls"]["table"]
    sources = [*annotation["extra_tables"], *([controls_at] if controls_at else [])]
    tables = [NamedTable(source, table) for source, table in zip(sources, fetch_tables(sources, settings))]
    extra, controls = (tables[:-1], tables[-1]) if controls_at else (tables, None)
    wells = stamp_plate_columns(wells, plate_columns(settings["plates"], settings["dataset"], plate))
    annotated = annotate_profiles(wells, platemap, extra, controls, annotation, plate.plate)
    features = feature_columns(annotated.table)
    wellpos = "wellpos" in settings["normalization"]["adjust"]
    batch = read_batch(call.inputs.get("batch_wells", []), wells, features, plate) if wellpos else None
    normalized = normalize_plate(annotated.table, features, settings["normalization"], plate.plate, batch)
    metadata = pa.Table.from_pandas(annotated.table.drop(columns=features), preserve_index=False)
    raw = annotated.table[features].to_numpy(dtype="float64")
    provenance = {
        "plate": call.plate_id,
        "features": call.wildcard("features"),
        "inputs": {name: [str(p) for p in paths] for name, paths in call.inputs.items()},
        "annotation": annotated.report,
        "normalization": normalized.report,
        "versions": package_versions(VERSIONED_PACKAGES),
    }
    write_table(profile_table(metadata, features, raw), call.output("annotated"), STAGE, provenance)
    write_table(profile_table(metadata, features, normalized.values), call.output("profiles"), STAGE, provenance)


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
