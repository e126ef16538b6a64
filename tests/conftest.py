"""Shared pytest fixtures: the real S3 server and the real-data fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from workflow_scripts.demo.s3server import S3Server

REPO = Path(__file__).resolve().parents[1]
SHARED_FIXTURES = REPO.parent / "shared" / "fixtures"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``jax`` (scib-metrics starts JAX's threads in this process) run last.

    A process forked after JAX has started its threads may deadlock, and the
    OME-Zarr writer's workers fork.
    """
    items.sort(key=lambda item: item.get_closest_marker("jax") is not None)


@pytest.fixture(scope="session")
def shared_fixtures() -> Path:
    """``../shared/fixtures`` beside the checkout; tests skip where it is absent."""
    if not SHARED_FIXTURES.is_dir():
        pytest.skip(f"real-data fixtures not found at {SHARED_FIXTURES}")
    return SHARED_FIXTURES


@pytest.fixture(scope="session")
def s3_server():
    """A moto S3 server process on 127.0.0.1, shared by the session."""
    with S3Server() as server:
        yield server


@pytest.fixture(scope="session")
def demo_gallery(tmp_path_factory, s3_server):
    """The small demo gallery, built once and served by the session's S3 server.

    Yields (layout, root): ``root`` holds ``gallery/`` (the bucket's contents),
    ``plates.csv`` and ``ground_truth/``.
    """
    from workflow_scripts.demo.build import BUCKET, build_gallery
    from workflow_scripts.demo.design import small_layout
    from workflow_scripts.demo.s3server import upload_tree

    layout = small_layout()
    root = tmp_path_factory.mktemp("demo")
    gallery = build_gallery(layout, root)
    upload_tree(s3_server.admin_client(), BUCKET, gallery)
    yield layout, root
