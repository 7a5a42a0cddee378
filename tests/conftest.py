"""Shared test paths: the upstream golden fixtures live in ../shared beside the checkout."""
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO.parent / "shared" / "fixtures" / "upstream"


@pytest.fixture(scope="session")
def fixtures() -> Path:
    if not FIXTURES.is_dir():
        pytest.fail(f"upstream fixtures not found at {FIXTURES}")
    return FIXTURES
