"""The report in a real browser: it opens offline, every image decodes, nothing runs or reaches out."""

from __future__ import annotations

import pytest

from tests.support.browser import chromium, open_in_chromium
from tests.support.report_inputs import HOSTILE_PERTURBATION, HOSTILE_PLATE, built_report

pytestmark = pytest.mark.skipif(chromium() is None, reason="no Chromium at /usr/bin/chromium or on PATH")


def test_report_opens_offline_in_chromium(tmp_path_factory):
    page = open_in_chromium(built_report(tmp_path_factory, "full"))
    assert len(page.images) >= 10
    assert [image for image in page.images if not (image["decoded"] and image["width"] and image["height"])] == []
    assert page.foreign_requests == []
    assert page.errors == []
    assert page.dialogs == []
    assert HOSTILE_PERTURBATION in page.text and HOSTILE_PLATE in page.text


def test_the_browser_check_sees_what_a_bad_page_does(tmp_path):
    """The checks above would pass on a page that did nothing; this one does everything they look for."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        '<!DOCTYPE html><html><body><p>visible</p><img src="http://127.0.0.1:9/x.png">'
        '<script>console.error("logged"); alert("opened"); throw new Error("thrown");</script></body></html>'
    )
    page = open_in_chromium(bad)
    assert page.foreign_requests == ["http://127.0.0.1:9/x.png"]
    assert page.images[0]["width"] == 0
    assert page.console_errors == ["logged"]
    assert any("thrown" in text for text in page.exceptions)
    assert page.dialogs == ["alert: opened"]
    assert page.text == "visible"
