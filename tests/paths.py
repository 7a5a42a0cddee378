"""Where the tests find the repository and its golden fixtures (all inside the repository)."""
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "upstream"  # upstream NotaGen's golden outputs; see its README
PREPROCESS = FIXTURES / "preprocess"
TINY_MODEL = FIXTURES / "tiny_model.pth"
DEMO_MODEL = REPO / "assets" / "demo_model.pth"
