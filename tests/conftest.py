"""Shared test paths: the upstream golden fixtures live in ../shared beside the checkout."""
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO.parent / "shared" / "fixtures" / "upstream"


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
