"""The report's HTML, rendered by Jinja2 with autoescaping on.

Plate, perturbation and MoA names and config values come from data; with
autoescaping every one of them is text, never markup, so a perturbation
named ``<script>…`` shows as its name and runs nothing.
"""

from __future__ import annotations

from jinja2 import Environment, PackageLoader, StrictUndefined

ENVIRONMENT = Environment(
    loader=PackageLoader("workflow_scripts.report", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def render(**context: object) -> str:
    """The whole report page."""
    return ENVIRONMENT.get_template("report.html.j2").render(**context)
