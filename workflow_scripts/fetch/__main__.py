"""The fetch stage: ``python -m workflow_scripts.fetch {plate,backend,platemap,plan,summary}`` (see ``workflow_scripts.stage``).

- ``plate`` writes ``--output load_data=`` and ``--output manifest=``;
- ``backend`` writes ``--output manifest=`` (the plate's CellProfiler output, fetched);
- ``platemap`` writes ``--output platemap=`` (the plate's wells from its platemap);
- ``plan`` writes ``--output plan=`` (objects and bytes, no image downloaded);
- ``summary`` writes ``--output summary=`` from every ``--input plans=``.

Settings: ``fetch``, ``gallery``, ``cache_dir``; ``sample`` and ``channels``
for ``plate`` and ``plan``; ``cellprofiler`` for ``backend``, and with
``features`` for ``plan``; ``annotation`` for ``platemap``.
"""

from __future__ import annotations

from workflow_scripts.fetch.backend import fetch_backend, planned_sources
from workflow_scripts.fetch.plate import FetchSettings, fetch_plate, plan_plate, summarize_plans
from workflow_scripts.fetch.platemap import fetch_platemap
from workflow_scripts.stage import StageCall, run_stage


def plate(call: StageCall) -> None:
    """Download and verify one plate's objects."""
    fetch_plate(call.plate, FetchSettings.from_config(call.settings), call.output("load_data"), call.output("manifest"))


def backend(call: StageCall) -> None:
    """Download and verify one plate's CellProfiler output."""
    settings = call.settings
    fetch_backend(
        call.plate, FetchSettings.from_config(settings), settings["cellprofiler"]["sources"], call.output("manifest")
    )


def platemap(call: StageCall) -> None:
    """Find and write one plate's platemap wells."""
    fetch_platemap(call.plate, call.settings, call.output("platemap"))


def plan(call: StageCall) -> None:
    """Count one plate's objects and bytes."""
    settings = call.settings
    plan_plate(call.plate, FetchSettings.from_config(settings), call.output("plan"), planned_sources(settings))


def summary(call: StageCall) -> None:
    """One table of every plate's plan, printed and written."""
    print(summarize_plans(call.inputs.get("plans", []), call.output("summary")).to_string(index=False))


def main(argv: list[str] | None = None) -> int:
    return run_stage("fetch", {"plate": plate, "backend": backend, "platemap": platemap, "plan": plan, "summary": summary}, argv)


if __name__ == "__main__":
    raise SystemExit(main())
