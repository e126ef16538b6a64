"""Figures as ``data:`` URIs, and the colours shared by every figure of a feature set.

Matplotlib's object-oriented ``Figure`` draws with the Agg canvas and keeps
no global pyplot state, so a report with hundreds of figures does not leak
them, and no display is ever needed.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from matplotlib import colormaps
from matplotlib.colors import to_hex
from matplotlib.figure import Figure

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DPI = 96
# Legends and point colours: the most frequent categories get a colour each,
# the rest share one, so a batch or MoA with few wells cannot hide among 200.
MAX_CATEGORIES = 12
OTHER = "other"
NEUTRAL = {OTHER: "#bbbbbb", "negative control": "#8c8c8c", "unannotated": "#d9d9d9"}


@dataclass(frozen=True)
class Image:
    """One embedded picture; ``random_weights`` puts the red warning beside it."""

    uri: str
    alt: str
    caption: str = ""
    random_weights: bool = False


@dataclass(frozen=True)
class LegendEntry:
    """A category and its colour, drawn as HTML so names from data are escaped text."""

    label: str
    colour: str
    count: int


@dataclass(frozen=True)
class Legend:
    """What the colours of one panel mean."""

    title: str
    entries: list[LegendEntry]


def new_figure(width: float, height: float) -> Figure:
    """A figure with constrained layout (labels never overlap the panels)."""
    return Figure(figsize=(width, height), layout="constrained")


def figure_uri(figure: Figure) -> str:
    """The figure as a PNG ``data:`` URI; no software tag, so nothing in the file names a web address."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return png_uri(buffer.getvalue())


def png_uri(data: bytes) -> str:
    """PNG bytes as a ``data:`` URI."""
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def png_file_uri(path: Path) -> str | None:
    """A PNG file as a ``data:`` URI, or None where the file is not a PNG (the report says so)."""
    data = path.read_bytes()
    return png_uri(data) if data.startswith(PNG_SIGNATURE) and len(data) > len(PNG_SIGNATURE) else None


def text(value: object) -> str:
    """``value`` as matplotlib text: a ``$`` in a name from data would otherwise start mathtext."""
    return str(value).replace("$", r"\$")


def category_colours(labels: Iterable[str]) -> dict[str, str]:
    """The most frequent labels with a colour each, in order of frequency; ``other`` for the rest.

    The labels named in ``NEUTRAL`` (controls, unannotated) keep their grey
    and do not use up one of the colours.
    """
    counts = pd.Series(list(labels), dtype="object").value_counts(sort=True)
    palette = colormaps["tab20"].colors if len(counts) > 10 else colormaps["tab10"].colors
    coloured = [label for label in counts.index if label not in NEUTRAL][:MAX_CATEGORIES]
    colours = {label: to_hex(palette[i % len(palette)]) for i, label in enumerate(coloured)}
    colours.update({label: NEUTRAL[label] for label in counts.index if label in NEUTRAL})
    if len(counts) > len(colours):
        colours[OTHER] = NEUTRAL[OTHER]
    return colours


def colour_of(labels: pd.Series, colours: dict[str, str]) -> list[str]:
    """Each label's colour; labels beyond the coloured ones are ``other``."""
    return [colours.get(label, NEUTRAL[OTHER]) for label in labels]


def legend(labels: pd.Series, colours: dict[str, str]) -> list[LegendEntry]:
    """Legend entries with how many points each colour stands for."""
    grouped = labels.where(labels.isin(list(colours)), OTHER).value_counts()
    return [LegendEntry(label, colour, int(grouped.get(label, 0))) for label, colour in colours.items()]
