"""Where the tests find the repository and its golden fixtures (all inside the repository),
and whether this system can make the symbolic links some tests plant."""
import functools
import importlib.util
import os
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "upstream"  # upstream NotaGen's golden outputs; see its README
PREPROCESS = FIXTURES / "preprocess"
TINY_MODEL = FIXTURES / "tiny_model.pth"
DEMO_MODEL = REPO / "assets" / "demo_model.pth"


def load_benchmark(name: str):
    """A script of benchmarks/ (say "training") imported as a module, for its functions and main()."""
    spec = importlib.util.spec_from_file_location(f"{name}_benchmark", REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@functools.cache
def symlinks_supported() -> bool:
    """Tried once: Windows without developer mode, and some file systems, refuse to make links."""
    with tempfile.TemporaryDirectory() as folder:
        try:
            os.symlink(folder, Path(folder) / "link", target_is_directory=True)
        except (OSError, NotImplementedError):
            return False
    return True


needs_symlinks = pytest.mark.skipif(not symlinks_supported(), reason="this system cannot make symbolic links")
