"""The one shape of every stage's command line.

Each stage is ``python -m workflow_scripts.<stage> [action]`` with

- ``--settings``: the config sections it needs, as JSON text or as a YAML/JSON
  config file; every key left out takes its default from the schema;
- ``--input NAME=PATH`` and ``--output NAME=PATH``, named as in the rule;
- ``--plate DATASET/SOURCE/BATCH/PLATE`` where the stage works on one plate;
- ``--wildcard NAME=VALUE`` for the rule's other wildcards (``features``, ``method``);
- ``--threads N``.

The rule hands these over in one piece (``stage_call`` in
``rules/common.smk``), and a person can run the same command by hand. Every
stage ends the same way: an expected failure (``StageError``) is one log line
and exit status 1; anything else keeps its traceback.
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from workflow_scripts.errors import InputError, StageError
from workflow_scripts.fetch.gallery import PlateRef
from workflow_scripts.logs import configure_logging
from workflow_scripts.settings import complete


@dataclass(frozen=True)
class StageCall:
    """What one run of a stage is given."""

    settings: dict[str, Any]
    inputs: dict[str, list[Path]]
    outputs: dict[str, list[Path]]
    plate_id: str | None
    threads: int
    wildcards: dict[str, str] = field(default_factory=dict)

    @property
    def plate(self) -> PlateRef:
        """The plate this call works on; an error if none was given."""
        if self.plate_id is None:
            raise InputError("this stage needs --plate DATASET/SOURCE/BATCH/PLATE")
        parts = self.plate_id.split("/")
        if len(parts) != 4 or not all(parts):
            raise InputError(f"--plate {self.plate_id!r} is not DATASET/SOURCE/BATCH/PLATE")
        return PlateRef(*parts)

    def wildcard(self, name: str) -> str:
        """The value given as ``--wildcard name=VALUE``."""
        if name not in self.wildcards:
            raise InputError(f"missing --wildcard {name}=VALUE")
        return self.wildcards[name]

    def input(self, name: str) -> Path:
        """The one path given as ``--input name=PATH``."""
        return _one(self.inputs, name, "--input")

    def output(self, name: str) -> Path:
        """The one path given as ``--output name=PATH``."""
        return _one(self.outputs, name, "--output")


Action = Callable[[StageCall], None]


def _one(paths: Mapping[str, list[Path]], name: str, option: str) -> Path:
    found = paths.get(name, [])
    if len(found) != 1:
        raise InputError(f"expected one {option} {name}=PATH, got {len(found)}")
    return found[0]


def _grouped(pairs: Sequence[tuple[str, str]]) -> dict[str, list[Path]]:
    """``--input plans=a --input plans=b`` gives ``{"plans": [a, b]}``."""
    grouped: dict[str, list[Path]] = {}
    for name, path in pairs:
        grouped.setdefault(name, []).append(Path(path))
    return grouped


def _pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name or not value:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def read_settings(text: str) -> dict[str, Any]:
    """JSON text, or the path of a YAML/JSON config file, completed from the schema."""
    stripped = text.strip()
    if stripped.startswith("{"):
        given = json.loads(stripped)
    else:
        path = Path(text)
        if not path.is_file():
            raise InputError(f"--settings {text!r} is neither JSON nor a config file")
        given = yaml.safe_load(path.read_text()) or {}
    return complete(given)


def _parser(stage: str, actions: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m workflow_scripts.{stage}", description=__doc__.split("\n\n")[1])
    if len(actions) > 1:
        parser.add_argument("action", choices=actions)
    parser.add_argument("--settings", default="{}", help="config sections as JSON, or a config file")
    parser.add_argument("--input", type=_pair, action="append", default=[], metavar="NAME=PATH")
    parser.add_argument("--output", type=_pair, action="append", default=[], metavar="NAME=PATH")
    parser.add_argument("--plate", default=None, metavar="DATASET/SOURCE/BATCH/PLATE")
    parser.add_argument("--wildcard", type=_pair, action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--threads", type=int, default=1)
    return parser


def run_stage(stage: str, actions: Mapping[str, Action], argv: Sequence[str] | None = None) -> int:
    """Parse the command line, run the chosen action, and end the way every stage ends."""
    configure_logging()
    log = logging.getLogger(f"workflow_scripts.{stage}")
    args = _parser(stage, list(actions)).parse_args(argv)
    action = actions[getattr(args, "action", next(iter(actions)))]
    try:
        call = StageCall(
            settings=read_settings(args.settings),
            inputs=_grouped(args.input),
            outputs=_grouped(args.output),
            plate_id=args.plate,
            threads=max(1, args.threads),
            wildcards={name: str(value) for name, value in args.wildcard},
        )
        action(call)
    except StageError as error:
        log.error("%s", error)
        return 1
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        log.error("%s", out_of_space(call))
        return 1
    return 0


def out_of_space(call: StageCall) -> str:
    """One line for a full disk, naming the plate and the outputs: the OS's own error names neither.

    The outputs are written under temporary names and renamed when complete
    (``workflow_scripts.atomic``), so nothing half-written is left to look done.
    """
    outputs = [path for paths in call.outputs.values() for path in paths]
    where = next((p for path in outputs for p in (path, *path.parents) if p.exists()), Path.cwd())
    free = shutil.disk_usage(where).free
    job = f"plate {call.plate_id.rsplit('/', 1)[-1]}: " if call.plate_id else ""
    return (
        f"{job}no space left on device writing {', '.join(map(str, outputs))} ({free} bytes free there); "
        "free space or move results_dir, then rerun"
    )
