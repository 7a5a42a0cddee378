"""Shared fixtures: upstream NotaGen's golden outputs, kept in tests/fixtures/upstream."""
import json
from pathlib import Path

import pytest

from tests.paths import FIXTURES


@pytest.fixture(scope="session")
def fixtures() -> Path:
    if not FIXTURES.is_dir():
        pytest.fail(f"upstream fixtures not found at {FIXTURES}")
    return FIXTURES


@pytest.fixture(scope="session")
def postprocessed(fixtures) -> dict[str, str]:
    """Upstream's post-processed pieces by name (real chorales and quartet movements)."""
    cases = json.loads((fixtures / "postprocess.json").read_text(encoding="utf-8"))
    return {case["name"]: case["postprocessed"] for case in cases}


@pytest.fixture(scope="session")
def chorale(postprocessed) -> str:
    return postprocessed["bach_bwv66.6_C"]
