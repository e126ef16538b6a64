"""The correct stage: ``python -m workflow_scripts.correct`` (see ``workflow_scripts.stage``).

Reads ``--input selected=`` (``collection/{features}/selected.parquet``);
writes ``--output corrected=`` (``corrected/{method}.parquet``: the same
rows in the same order, metadata as read, corrected features),
``--output model=`` (``models/{method}.npz``) and ``--output lineage=``
(``models/{method}.json``). Wildcards: ``features`` and ``method`` (e.g.
``sphering+harmony``). Settings: ``correction``; with
``correction.locked`` set, the model of the same features and method under
that earlier collection folder is applied instead of fitted.
"""

from __future__ import annotations

import logging

from threadpoolctl import threadpool_limits

from workflow_scripts.correct.chain import check_locked, parse_method, require_lockable, run_chain
from workflow_scripts.correct.groups import plate_groups
from workflow_scripts.correct.models import Model, lineage_record, load_model, locked_paths, save_model
from workflow_scripts.correct.profiles import read_profiles, write_corrected
from workflow_scripts.provenance import package_versions
from workflow_scripts.stage import StageCall, run_stage

log = logging.getLogger("workflow_scripts.correct")

VERSIONED_PACKAGES = ("numpy", "scipy", "scikit-learn", "harmonypy", "pandas", "pyarrow")


def correct(call: StageCall) -> None:
    """Correct one feature set's selected profiles with one method (or chain)."""
    settings = call.settings["correction"]
    method, features = call.wildcard("method"), call.wildcard("features")
    parse_method(method)
    locked, locked_from = _locked(settings["locked"], features, method)
    profiles = read_profiles(call.input("selected"))
    if locked:
        check_locked(locked, method, settings, profiles.features, str(profiles.path))
    groups = plate_groups(profiles.metadata, settings["batch_key"], settings["by_plate_type"], profiles.path)
    # One BLAS thread: sums split over threads round differently with their number, so sphering's output
    # and Harmony's PCA would change in the last bits with `threads` (a rerun on another node). Harmony's
    # own threads (`call.threads`) give the same result for any number.
    with threadpool_limits(1):
        result = run_chain(profiles.values, profiles.features, groups, method, settings, call.threads, locked)
    for warning in result.warnings:
        log.warning("%s", warning)
    context = {
        "features": features,
        "settings": settings,
        "warnings": result.warnings,
        "locked_from": locked_from,
        "package_versions": package_versions(VERSIONED_PACKAGES),
    }
    record = lineage_record(result.model, groups, **context)
    digest = save_model(result.model, call.output("model"), call.output("lineage"), record)
    provenance = {**context, "method": method, "input": str(profiles.path), "model_npz_sha256": digest}
    write_corrected(call.output("corrected"), profiles, result.values, result.model.features_out, provenance)
    log.info(
        "%s %s: %d profiles, %d corrected features",
        features,
        method,
        len(result.values),
        len(result.model.features_out),
    )


def _locked(locked: str | None, features: str, method: str) -> tuple[Model | None, dict | None]:
    """The locked model and where it came from; refuses methods that cannot be locked first."""
    if locked is None:
        return None, None
    require_lockable(method)
    npz, lineage = locked_paths(locked, features, method)
    model, digest = load_model(npz, lineage)
    return model, {"npz": str(npz), "lineage": str(lineage), "npz_sha256": digest}


def main(argv: list[str] | None = None) -> int:
    return run_stage("correct", {"correct": correct}, argv)


if __name__ == "__main__":
    raise SystemExit(main())
