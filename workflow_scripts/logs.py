"""Logging of the command-line entry points: one format for every stage's log."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str | int = logging.INFO) -> None:
    """Log to stderr, which the rules redirect into each job's log file."""
    logging.basicConfig(level=level, stream=sys.stderr, format=FORMAT)


def some(names: Sequence[str], shown: int = 5) -> str:
    """The first few of ``names`` and how many more: long lists stay one readable log line."""
    names = list(names)
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more
