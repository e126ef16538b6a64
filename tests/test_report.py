"""The report stage on a synthetic results tree: self-contained, escaped, flagged, and saying what it lacks."""

from __future__ import annotations

import base64
import io
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from tests.support.report_inputs import (
    CHECKPOINT_SHA256,
    HOSTILE_PERTURBATION,
    HOSTILE_PLATE,
    PLATES,
    built_report,
)
from workflow_scripts.errors import InputError
from workflow_scripts.report.inputs import collection_inputs

NETWORK = re.compile(r"^\s*(https?:|ftp:|//)", re.IGNORECASE)
CSS_URL = re.compile(r"url\(\s*['\"]?([^'\")]*)", re.IGNORECASE)


class Page(HTMLParser):
    """The parts of a report page the tests look at, as a browser's parser sees them."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self.figures: list[dict] = []
        self.classes: list[str] = []
        self._figure: dict | None = None
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        self.tags.append((tag, attributes))
        self.classes += attributes.get("class", "").split()
        if tag == "figure":
            self._figure = {"alt": "", "random_weights": False}
        elif tag == "img" and self._figure is not None:
            self._figure["alt"] = attributes.get("alt", "")
        elif self._figure is not None and "random-weights" in attributes.get("class", ""):
            self._figure["random_weights"] = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "figure" and self._figure is not None:
            self.figures.append(self._figure)
            self._figure = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    @property
    def plain(self) -> str:
        return " ".join(" ".join(self.text).split())

    def attributes(self, tag: str) -> list[dict[str, str]]:
        return [attributes for name, attributes in self.tags if name == tag]


@pytest.fixture(scope="module")
def full(tmp_path_factory) -> tuple[str, Page]:
    html = built_report(tmp_path_factory, "full").read_text()
    return html, Page(html)


@pytest.fixture(scope="module")
def cellprofiler_only(tmp_path_factory) -> Page:
    return Page(built_report(tmp_path_factory, "cellprofiler_only").read_text())


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Page:
    return Page(built_report(tmp_path_factory, "checkpoint_without_kpis").read_text())


def test_nothing_refers_to_the_network(full):
    html, page = full
    references = [value for _, attributes in page.tags for key, value in attributes.items() if key in ("src", "href")]
    references += CSS_URL.findall(html)
    assert references
    assert [ref for ref in references if NETWORK.match(ref)] == []
    assert page.attributes("script") == [] and page.attributes("link") == [] and page.attributes("iframe") == []
    assert all(ref.startswith(("data:", "#")) for ref in references), "only data: URIs and in-page anchors"


def test_every_image_is_an_embedded_png(full):
    _, page = full
    images = page.attributes("img")
    assert len(images) >= 10
    for image in images:
        prefix = "data:image/png;base64,"
        assert image["src"].startswith(prefix), image["src"][:40]
        data = base64.b64decode(image["src"][len(prefix) :], validate=True)
        with Image.open(io.BytesIO(data)) as decoded:
            decoded.verify()
            assert decoded.format == "PNG" and decoded.width > 0 and decoded.height > 0


def test_every_plate_is_named_and_the_page_has_every_section(full):
    _, page = full
    for _, _, plate in PLATES:
        assert plate in page.plain
    for heading in ("1. The run and its lineage", "2. Plates", "3. Feature distributions", "4. UMAPs", "5. KPIs"):
        assert heading in page.plain
    assert "6. Drift of the negative controls" in page.plain
    assert "out of focus: DNA slope -3.10 < -2.50" in page.plain, "the excluded field and its reason"
    assert "umap_max_profiles: 40" in page.plain, "the config, as YAML"
    assert "umap-learn" in page.plain and "scikit-learn" in page.plain, "package versions"


def test_drifting_plate_gets_figures_first(full):
    html, _ = full
    assert html.count('<a href="#plate-0">plate figures</a>') == 1
    assert re.search(r'<h3 id="plate-0">&lt;img src=x onerror=alert\(2\)&gt;', html), "the flagged plate is shown"
    assert html.count("table only") == 2, "max_plates 1 leaves two plates to the table"


def test_hostile_names_are_text(full):
    html, page = full
    assert HOSTILE_PERTURBATION in page.plain and HOSTILE_PLATE in page.plain
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(2)&gt;" in html
    assert [image for image in page.attributes("img") if image["src"] == "x"] == []


def test_random_weights_beside_every_dino_figure(full):
    _, page = full
    dino = [figure for figure in page.figures if "dino" in figure["alt"]]
    assert len(dino) >= 5, "distributions, UMAPs, KPI chart, drift"
    assert all(figure["random_weights"] for figure in dino)
    assert not any(figure["random_weights"] for figure in page.figures if "cellprofiler" in figure["alt"])
    assert "vit_small, no checkpoint" in page.plain


def test_checkpoint_sha256_shown_without_random_weights(checkpoint):
    assert f"sha256 {CHECKPOINT_SHA256}" in checkpoint.plain
    assert "random-weights" not in checkpoint.classes


def test_chosen_method_highlighted_with_its_reason(full):
    html, page = full
    assert re.search(r'<th class="chosen">harmony ★</th>', html)
    assert "Selected method: harmony" in page.plain
    assert "harmony has the highest combined score" in page.plain
    assert "fails the gate: silhouette_batch 0.3 > 0.2" in page.plain
    assert "0.3 (fail)" in page.plain and "0.05 (pass)" in page.plain
    assert "not computable: no Metadata_Target column" in page.plain


def test_a_feature_set_not_configured_says_so(cellprofiler_only):
    page = cellprofiler_only
    assert "DINO features are not configured in this run" in page.plain
    assert page.plain.count("dino features are not configured in this run.") == 4, "sections 3 to 6"
    assert "random-weights" not in page.classes
    assert "Selected method: harmony" in page.plain, "the configured feature set is still reported"


def test_absent_inputs_are_named(checkpoint):
    assert "kpis.parquet: not given to the report stage" in checkpoint.plain
    assert "drift.parquet: not given to the report stage" in checkpoint.plain
    assert "cellprofiler features are not configured in this run." in checkpoint.plain


def test_inputs_found_by_path_under_either_name():
    paths = {
        "kpis_dino": [Path("r/collection/dino/kpis.parquet")],
        "corrected": [Path("r/collection/cellprofiler/corrected/sphering+harmony.parquet")],
        "corrected_dino": [
            Path("r/collection/dino/corrected/harmony.parquet"),
            Path("r/collection/dino/corrected/none.parquet"),
        ],
        "qc": [Path("r/plates/a/b/c/d/qc/fields.parquet")],
    }
    found = collection_inputs(paths, ["dino", "cellprofiler"], ["none", "harmony", "sphering+harmony"])
    assert found["dino"].kpis == Path("r/collection/dino/kpis.parquet")
    assert list(found["dino"].corrected) == ["none", "harmony"], "in the config's method order"
    assert list(found["cellprofiler"].corrected) == ["sphering+harmony"]
    with pytest.raises(InputError, match="collection/"):
        collection_inputs({"drift": [Path("r/elsewhere/drift.parquet")]}, ["dino"], ["none"])
