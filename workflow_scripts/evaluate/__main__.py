"""The evaluate stage: ``python -m workflow_scripts.evaluate kpis|gate|drift`` (see ``workflow_scripts.stage``).

- ``kpis``: ``--input corrected=`` once per method (``corrected/{method}.parquet``);
  writes ``--output kpis=``, ``activity=`` and ``consensus=``.
- ``gate``: ``--input kpis=``; writes ``--output selected_method=`` (JSON).
- ``drift``: reads every selected plate's ``profiles/{features}_annotated.parquet``,
  found from the plate table beside its output; writes ``--output drift=``.

Wildcard ``features``. Settings: ``evaluation``; ``plates``, ``dataset`` and
``select`` for ``drift``.
"""

from __future__ import annotations

import json
import logging

import pandas as pd
from threadpoolctl import threadpool_limits

from workflow_scripts.atomic import atomic_path
from workflow_scripts.errors import InputError
from workflow_scripts.evaluate.drift import control_drift, read_controls
from workflow_scripts.evaluate.gate import choose_method
from workflow_scripts.paths import results_root
from workflow_scripts.plates import selected_plate_files
from workflow_scripts.provenance import package_versions, write_table
from workflow_scripts.stage import StageCall, run_stage

STAGE = "evaluate"
VERSIONED_PACKAGES = ("workflow_scripts", "numpy", "pandas", "scikit-learn", "copairs", "scib-metrics", "jax")

log = logging.getLogger("workflow_scripts.evaluate")


def kpis(call: StageCall) -> None:
    """All KPIs of every method of one feature set, with the activity and consensus tables."""
    from workflow_scripts.evaluate.methods import evaluate_methods  # its libraries' start-up: only this action

    features, settings = call.wildcard("features"), call.settings["evaluation"]
    paths = call.inputs.get("corrected", [])
    if not paths:
        raise InputError("evaluate kpis: no --input corrected=PATH given")
    with threadpool_limits(call.threads):
        evaluation = evaluate_methods(paths, features, settings, call.threads)
    provenance = {
        "features": features,
        "inputs": [str(path) for path in paths],
        "settings": settings,
        "versions": package_versions(VERSIONED_PACKAGES),
    }
    for name in ("activity", "consensus", "kpis"):
        write_table(getattr(evaluation, name), call.output(name), STAGE, provenance)
    computed = evaluation.kpis["value"].notna()
    log.info(
        "%s: %d KPI values for %d methods, %d not computable", features, computed.sum(), len(paths), (~computed).sum()
    )


def gate(call: StageCall) -> None:
    """The gate's verdict on each method and the chosen correction."""
    features, settings = call.wildcard("features"), call.settings["evaluation"]
    table = pd.read_parquet(call.input("kpis"))
    choice = choose_method(table, features, settings["gate"], settings["weights"])
    with atomic_path(call.output("selected_method")) as partial:
        partial.write_text(json.dumps(choice, indent=2) + "\n")
    log.info("%s: %s", features, choice["reason"])


def drift(call: StageCall) -> None:
    """Negative-control drift of every plate, in acquisition order."""
    features, settings = call.wildcard("features"), call.settings["evaluation"]
    out = call.output("drift")
    paths = selected_plate_files(call.settings, results_root(out), f"profiles/{features}_annotated.parquet")
    if not paths:
        raise InputError("evaluate drift: no plate selected")
    controls, plates = read_controls(paths, settings["drift"]["order_column"])
    table = control_drift(controls, plates, settings["drift"])
    table.insert(0, "features", features)
    write_table(table, out, STAGE, {"features": features, "inputs": [str(p) for p in paths]})
    flagged = table.loc[table["flagged"], "Metadata_Plate"].tolist()
    log.info("%s: %d plates, drifting: %s", features, len(table), ", ".join(flagged) or "none")


def main(argv: list[str] | None = None) -> int:
    return run_stage(STAGE, {"kpis": kpis, "gate": gate, "drift": drift}, argv)


if __name__ == "__main__":
    raise SystemExit(main())
