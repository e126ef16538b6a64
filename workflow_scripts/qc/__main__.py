"""The QC stage: ``python -m workflow_scripts.qc`` (see ``workflow_scripts.stage``).

Reads ``--input plate=`` (a ``{plate}.ome.zarr``) and writes beside
``--output fields=`` (``qc/fields.parquet``): the heatmaps
``heatmaps/heatmap_{focus,nuclei,intensity,saturation,flagged}.png`` (one
folder, so a plate has few files for cross-plate rules to check) and
``illum/{plate}_Illum{Ch}.npy`` with ``illum/illum.json``. Settings: ``qc``.
"""

from __future__ import annotations

from workflow_scripts.qc.plate_qc import run_plate_qc
from workflow_scripts.qc.thresholds import QcThresholds
from workflow_scripts.stage import StageCall, run_stage


def qc(call: StageCall) -> None:
    """QC one plate into the folder of its fields table."""
    settings = call.settings["qc"]
    run_plate_qc(
        call.input("plate"),
        call.output("fields").parent,
        QcThresholds.from_config(settings),
        exclude_flagged=settings["exclude_flagged"],
        illum_filter_size=settings["illum_filter_size"],
        workers=call.threads,
    )


def main(argv: list[str] | None = None) -> int:
    return run_stage("qc", {"qc": qc}, argv)


if __name__ == "__main__":
    raise SystemExit(main())
