"""The config schema as the one home of every default.

Snakemake validates the user's config against ``config/config.schema.yaml``
and fills its defaults; a stage run by hand gets the same treatment here, so
no default is ever written twice.
"""

from __future__ import annotations

import copy
import difflib
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator, ValidationError, validators

from workflow_scripts.errors import InputError

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "config" / "config.schema.yaml"


class SettingsError(InputError):
    """Settings that do not fit the schema; the message names the key."""


@cache
def schema() -> dict:
    """The workflow's config schema."""
    return yaml.safe_load(SCHEMA_PATH.read_text())


def _filling_validator():
    """A validator that also writes each property's default where it is absent."""
    base = Draft202012Validator

    def set_defaults(validator, properties, instance, node):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from base.VALIDATORS["properties"](validator, properties, instance, node)

    return validators.extend(base, {"properties": set_defaults})


def complete(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` (top-level config keys) with every default filled in, validated.

    Keys the caller did not give are filled too, so a stage run by hand with
    ``{}`` sees the same values a workflow run with an empty config would.
    """
    filled = copy.deepcopy(settings)
    root = {**schema(), "required": []}
    errors = sorted(_filling_validator()(root).iter_errors(filled), key=lambda e: list(e.absolute_path))
    if errors:
        raise SettingsError(describe(errors[0]))
    return resolve_cache_dir(filled)


def describe(error: ValidationError) -> str:
    """One line naming the offending key, as ``config key fetch.concurrency: ...``.

    An unknown key is named itself, with the nearest known key, because
    jsonschema's own message names only the section it sits in.
    """
    where = [str(p) for p in error.absolute_path]
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = list(error.schema.get("properties", {}))
        unknown = sorted(key for key in error.instance if key not in known)
        if unknown:
            key = ".".join([*where, str(unknown[0])])
            close = difflib.get_close_matches(str(unknown[0]), known, n=1)
            hint = f"did you mean {'.'.join([*where, close[0]])}?" if close else f"known: {', '.join(known)}"
            return f"config key {key} is not a known key ({hint})"
    return f"config key {'.'.join(where) or '(top level)'}: {error.message}"


def resolve_cache_dir(config: dict[str, Any]) -> dict[str, Any]:
    """``cache_dir`` made explicit: unset means ``{results_dir}/cache``."""
    config["cache_dir"] = config["cache_dir"] or f"{config['results_dir']}/cache"
    return config
