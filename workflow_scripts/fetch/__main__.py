"""The fetch stage: ``python -m workflow_scripts.fetch {plate,plan,summary}`` (see ``workflow_scripts.stage``).

- ``plate`` writes ``--output load_data=`` and ``--output manifest=``;
- ``plan`` writes ``--output plan=`` (objects and bytes, no image downloaded);
- ``summary`` writes ``--output summary=`` from every ``--input plans=``.

Settings: ``fetch``, ``gallery``, ``cache_dir``, ``sample`` and ``channels``;
``cellprofiler`` and ``features`` for ``plan``. The plate's CellProfiler
output and its platemap are fetched by the stages that read them
(``workflow_scripts.cellprofiler``, ``workflow_scripts.profiles``).
"""

from __future__ import annotations

from workflow_scripts.fetch.backend import planned_sources
from workflow_scripts.fetch.plate import FetchSettings, fetch_plate, plan_plate, summarize_plans
from workflow_scripts.stage import StageCall, run_stage


def plate(call: StageCall) -> None:
    """Download and verify one plate's objects."""
    fetch_plate(call.plate, FetchSettings.from_config(call.settings), call.output("load_data"), call.output("manifest"))


def plan(call: StageCall) -> None:
    """Count one plate's objects and bytes."""
    settings = call.settings
    plan_plate(call.plate, FetchSettings.from_config(settings), call.output("plan"), planned_sources(settings))


def summary(call: StageCall) -> None:
    """One table of every plate's plan, printed and written."""
    print(summarize_plans(call.inputs.get("plans", []), call.output("summary")).to_string(index=False))


def main(argv: list[str] | None = None) -> int:
    return run_stage("fetch", {"plate": plate, "plan": plan, "summary": summary}, argv)


if __name__ == "__main__":
    raise SystemExit(main())
