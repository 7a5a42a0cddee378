"""Shared fixtures: upstream NotaGen's golden outputs, kept in tests/fixtures/upstream."""
import json
import shutil
from pathlib import Path

import pytest

from pipelines.service import Backend, Settings, Workspace
from tests.paths import FIXTURES
from tests.windows_files import simulate_windows_replace


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


@pytest.fixture(scope="session")
def long_chorale(chorale) -> str:
    """The chorale with its body sung twice (pickup, 8 bars, 8 bars, last bar): 42 s on two A4 pages."""
    lines = chorale.rstrip("\n").split("\n")
    first = next(n for n, line in enumerate(lines) if line.startswith("[V:"))
    head, pickup, body, last = lines[:first], lines[first], lines[first + 1:-1], lines[-1]
    return "\n".join([*head, pickup, *body, *body, last]) + "\n"


@pytest.fixture
def chorale_backend(tmp_path, fixtures):
    """A studio backend whose workspace has a Bach chorale (MusicXML) in imports/chorale."""
    backend = Backend.open(tmp_path / "workspace")
    folder = backend.workspace.area("imports") / "chorale"
    folder.mkdir()
    shutil.copy(fixtures / "preprocess" / "bach_bwv66.6.musicxml", folder)
    yield backend
    backend.close()


@pytest.fixture
def tiny_backend(tmp_path, fixtures):
    """A studio backend on the CPU (fp32) whose workspace holds the tiny upstream model as models/tiny.pth."""
    ws = Workspace.open(tmp_path / "workspace")
    shutil.copy(fixtures / "tiny_model.pth", ws.area("models") / "tiny.pth")
    backend = Backend(ws, Settings(device="cpu", dtype="fp32"))
    yield backend
    backend.close()


@pytest.fixture
def windows_replace(monkeypatch) -> list[str]:
    """`os.replace` refuses a file this process maps or holds open, as on Windows; the refusals are listed."""
    return simulate_windows_replace(monkeypatch)
