"""Logging of the command-line entry points: one format for every stage's log."""

from __future__ import annotations

import logging
import sys

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str | int = logging.INFO) -> None:
    """Log to stderr, which the rules redirect into each job's log file."""
    logging.basicConfig(level=level, stream=sys.stderr, format=FORMAT)
