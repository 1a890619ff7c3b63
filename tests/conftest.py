"""Shared fixtures: where the real annotated data lives, and small synthetic volumes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TEST_DATA = REPO / "tests" / "data"


def _shared_data_dir() -> Path:
    env = os.environ.get("CLARITY_FAST_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real annotated sets beside the checkout (../shared/data); tests needing them skip without."""
    path = _shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"real data not found at {path} (set CLARITY_FAST_SHARED_DATA)")
    return path


@pytest.fixture(scope="session")
def test_data() -> Path:
    """Small copies of real data committed with the tests (licence notices beside them)."""
    return TEST_DATA
