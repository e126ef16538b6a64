"""Shared pytest fixtures: the real S3 server and the real-data fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from workflow_scripts.s3server import S3Server

REPO = Path(__file__).resolve().parents[1]
SHARED_FIXTURES = REPO.parent / "shared" / "fixtures"


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
