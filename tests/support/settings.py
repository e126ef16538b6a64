"""Stage settings built from the schema's defaults, as a workflow run would have them."""

from __future__ import annotations

from workflow_scripts.dino.pipeline import RunOptions
from workflow_scripts.dino.preprocess import Recipe
from workflow_scripts.omezarr.options import ConversionOptions
from workflow_scripts.qc.thresholds import QcThresholds
from workflow_scripts.settings import complete


def section(name: str, **overrides) -> dict:
    """One config section with the schema's defaults, and ``overrides`` on top."""
    return complete({name: overrides})[name]


def qc_thresholds(**overrides) -> QcThresholds:
    """QC thresholds of the default config, with ``overrides``."""
    return QcThresholds.from_config(section("qc", **overrides))


def conversion_options(workers: int = 1, **overrides) -> ConversionOptions:
    """Conversion options of the default config, with ``overrides``."""
    return ConversionOptions.from_config(section("convert", **overrides), workers=workers)


QC_DEFAULTS = {key: section("qc")[key] for key in ("exclude_flagged", "illum_filter_size")}


def make_recipe(**overrides) -> Recipe:
    """The embedding recipe of the default config, with ``overrides``."""
    return Recipe.from_config(section("embedding", **overrides))


def make_run_options(**overrides) -> RunOptions:
    """Embedding execution settings of the default config, with ``overrides``."""
    return RunOptions.from_config(section("embedding", **overrides))
