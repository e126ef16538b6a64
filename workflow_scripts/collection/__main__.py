"""The collection stage: ``python -m workflow_scripts.collection {collect,select}`` (see ``workflow_scripts.stage``).

- ``collect`` reads every selected plate's ``profiles/{features}.parquet``,
  found from the plate table beside its output, and writes ``--output profiles=``
  (``collection/{features}/profiles.parquet``). Settings: ``selection``
  (``keep_shared_columns``), ``plates``, ``dataset``, ``select``.
- ``select`` reads ``--input profiles=`` (the collection) and writes
  ``--output selected=`` (``collection/{features}/selected.parquet``).
  Settings: ``selection``, ``correction`` (``locked``: an earlier run's
  collection folder, whose ``{features}/selected.parquet`` fixes the features).

Both take ``--wildcard features=dino|cellprofiler``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from workflow_scripts.collection.collect import collect_profiles
from workflow_scripts.collection.select import select_features
from workflow_scripts.errors import InputError
from workflow_scripts.paths import results_root
from workflow_scripts.plates import selected_plate_files
from workflow_scripts.provenance import package_versions, read_provenance, write_table
from workflow_scripts.stage import StageCall, run_stage

STAGE = "collection"
VERSIONED_PACKAGES = ("workflow_scripts", "pycytominer", "pandas", "pyarrow")


def collect(call: StageCall) -> None:
    """Every plate's profiles in one sorted table."""
    features, out = call.wildcard("features"), call.output("profiles")
    plates = selected_plate_files(call.settings, results_root(out), f"profiles/{features}.parquet")
    collected = collect_profiles(plates, call.settings["selection"]["keep_shared_columns"])
    provenance = {
        "action": "collect",
        "features": features,
        **collected.report,
        "versions": package_versions(VERSIONED_PACKAGES),
    }
    write_table(collected.table, out, STAGE, provenance)


def select(call: StageCall) -> None:
    """The collection with the selected (or locked) feature columns."""
    features = call.wildcard("features")
    source = call.input("profiles")
    locked = call.settings["correction"]["locked"]
    settings = call.settings["selection"].get(features)
    if not isinstance(settings, dict):
        raise InputError(f"--wildcard features={features!r}: no selection.{features} in the settings")
    selected = select_features(
        pd.read_parquet(source), settings, Path(locked) / features / "selected.parquet" if locked else None
    )
    provenance = {
        "action": "select",
        "features": features,
        "input": str(source),
        "plates": [plate["plate"] for plate in read_provenance(source, STAGE)["plates"]],
        "settings": settings,
        **selected.report,
        "versions": package_versions(VERSIONED_PACKAGES),
    }
    write_table(selected.table, call.output("selected"), STAGE, provenance)


def main(argv: list[str] | None = None) -> int:
    return run_stage(STAGE, {"collect": collect, "select": select}, argv)


if __name__ == "__main__":
    raise SystemExit(main())
