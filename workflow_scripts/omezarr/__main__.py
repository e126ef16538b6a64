"""The OME-Zarr stage: ``python -m workflow_scripts.omezarr`` (see ``workflow_scripts.stage``).

Reads ``--input load_data=`` (the fetch stage's ``load_data.parquet``) and the
fetched TIFFs under ``cache_dir``; writes ``--output plate=`` (``{plate}.ome.zarr``).
Settings: ``convert``, ``channels``, ``cache_dir``.
"""

from __future__ import annotations

from workflow_scripts.omezarr.options import ConversionOptions
from workflow_scripts.omezarr.writer import convert_plate
from workflow_scripts.stage import StageCall, run_stage


def omezarr(call: StageCall) -> None:
    """Convert one fetched plate."""
    settings = call.settings
    options = ConversionOptions.from_config(settings["convert"], workers=call.threads)
    convert_plate(call.input("load_data"), settings["cache_dir"], call.output("plate"), settings["channels"], options)


def main(argv: list[str] | None = None) -> int:
    return run_stage("omezarr", {"omezarr": omezarr}, argv)


if __name__ == "__main__":
    raise SystemExit(main())
