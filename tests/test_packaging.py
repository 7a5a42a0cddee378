"""What `pip install .` carries: every package, the demo model and prompts.txt; every import declared.

The wheel is built from a copy of the files the build reads (so the checkout gets no build/ or
egg-info), without build isolation: the installed setuptools builds it offline.
"""
import ast
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest

from pipelines.errors import NotaGenError
from pipelines.model import registry
from tests.paths import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
SHIPPED = ["assets/demo_model.pth", "prompts.txt"]  # kept at the repository's top level
BUILD_INPUTS = ["pyproject.toml", "README.md", "launch.py", "pipelines", "studio", "assets", "prompts.txt"]
FIRST_PARTY = {"pipelines", "studio", "launch"}


def packages(root: Path, name: str) -> set[str]:
    return {str(init.parent.relative_to(root)).replace("\\", "/") for init in (root / name).rglob("__init__.py")}


@pytest.fixture(scope="module")
def built_wheel(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    for name in BUILD_INPUTS:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            source.mkdir(exist_ok=True)
            shutil.copy2(src, source / name)
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                           "-q", "-w", str(work / "dist"), str(source)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    (built,) = (work / "dist").glob("notagen_studio-*.whl")
    return built


@pytest.fixture(scope="module")
def wheel(built_wheel) -> zipfile.ZipFile:
    with zipfile.ZipFile(built_wheel) as archive:
        yield archive


@pytest.mark.slow
def test_wheel_carries_every_package_the_demo_model_and_prompts(wheel):
    names = set(wheel.namelist())
    data = next(n for n in names if n.endswith(".dist-info/WHEEL")).replace(".dist-info/WHEEL", ".data/data/")
    for rel in SHIPPED:
        inside = f"{data}{registry.INSTALLED_NAME}/{rel}"
        assert inside in names, f"{rel} is not in the wheel (looked for {inside})"
        assert wheel.getinfo(inside).file_size == (REPO / rel).stat().st_size
    assert "launch.py" in names
    for package in sorted(packages(REPO, "pipelines") | packages(REPO, "studio")):
        assert f"{package}/__init__.py" in names, f"package {package} is not in the wheel"
    modules = {str(p.relative_to(REPO)).replace("\\", "/") for name in ("pipelines", "studio")
               for pattern in ("*.py", "*.js") for p in (REPO / name).rglob(pattern)}
    assert "studio/score_follow.js" in modules  # the studio's page script travels with its modules
    assert modules <= names, f"modules missing from the wheel: {sorted(modules - names)}"
    assert not [n for n in names if n.startswith("tests/")], "the tests are not part of the installed package"


@pytest.mark.slow
def test_installed_wheel_generates_with_the_demo_model_from_another_folder(built_wheel, tmp_path):
    """`pip install` of the wheel into a fresh venv, then `notagen generate` without --model, run
    outside the repository: the piece is written with the installed copy of the demo model. The venv
    borrows this environment's third-party packages through a .pth file instead of installing them."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the checkout must not shadow the install
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
                           "--no-index", "--ignore-installed", str(built_wheel)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          env=env, capture_output=True, text=True, check=True).stdout.strip()
    borrowed = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    Path(site, "borrowed_packages.pth").write_text("\n".join(sorted(borrowed)) + "\n", encoding="utf-8")
    notagen = python.with_name("notagen.exe" if sys.platform == "win32" else "notagen")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = subprocess.run([str(notagen), "generate", "--period", "Baroque", "--composer", "Bach, Johann Sebastian",
                           "--instrumentation", "Choral", "--seed", "7", "--max-patches", "3", "--out", "out"],
                          cwd=elsewhere, env=env, capture_output=True, text=True, timeout=600)
    written = sorted((elsewhere / "out").glob("*.json"))
    assert len(written) == 1, f"no piece written (exit {done.returncode}):\n{done.stderr[-3000:]}"
    meta_path = written[0]
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    installed = Path(sysconfig.get_path("data", vars={"base": str(venv), "platbase": str(venv)}))
    assert Path(meta["model"]) == installed / registry.INSTALLED_NAME / "assets" / "demo_model.pth", done.stderr
    assert meta["patches"] >= 1 and meta["chars"] > 0, meta
    raw = (elsewhere / "out" / meta_path.name.replace(".json", ".raw.abc")).read_text(encoding="utf-8")
    assert raw.startswith("%Baroque\n%Bach, Johann Sebastian\n%Choral"), raw[:200]


def test_registry_looks_in_the_source_tree_then_the_installation():
    roots = registry.shipped_roots()
    assert roots[0] == REPO
    assert all(root.parts[-2:] == tuple(registry.INSTALLED_NAME.split("/")) for root in roots[1:])
    assert registry.default_model_path() == REPO / "assets" / "demo_model.pth"
    assert registry.NOTAGENX_PROMPTS == REPO / "prompts.txt"


def test_installed_copy_is_found_when_the_source_tree_has_none(tmp_path, monkeypatch):
    installed = tmp_path / "share" / "notagen-studio"
    (installed / "assets").mkdir(parents=True)
    (installed / "assets" / "demo_model.pth").write_bytes(b"model")
    monkeypatch.setattr(registry, "shipped_roots", lambda: [tmp_path / "checkout", installed])
    assert registry.default_model_path() == installed / "assets" / "demo_model.pth"
    assert registry.find_shipped("prompts.txt") is None
    with pytest.raises(NotaGenError, match="prompts.txt is missing") as missing:
        registry.shipped_file("prompts.txt")
    assert str(tmp_path / "checkout" / "prompts.txt") in str(missing.value)
    assert str(installed / "prompts.txt") in str(missing.value)


def top_level_imports(path: Path) -> set[str]:
    """Top-level names of absolute imports anywhere in the file (module level and inside functions)."""
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def declared_distributions() -> set[str]:
    """Distribution names in [project.dependencies] and every optional extra, normalised (PEP 503)."""
    project = PYPROJECT["project"]
    extras = project.get("optional-dependencies", {}).values()
    requirements = [*project["dependencies"], *(r for extra in extras for r in extra)]
    return {normalise(re.match(r"[A-Za-z0-9_.-]+", r).group()) for r in requirements}


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_imported_package_is_declared():
    sources = [*(REPO / "pipelines").rglob("*.py"), *(REPO / "studio").rglob("*.py"), REPO / "launch.py"]
    imported = {}
    for path in sources:
        for root in top_level_imports(path) - FIRST_PARTY - set(sys.stdlib_module_names):
            imported.setdefault(root, path.relative_to(REPO))
    assert {"torch", "gradio", "pandas", "huggingface_hub"} <= set(imported)  # the scan sees imports
    providers = importlib.metadata.packages_distributions()
    declared = declared_distributions()
    undeclared = []
    for name, where in sorted(imported.items()):
        dists = {normalise(d) for d in providers.get(name, [name])}
        if not dists & declared:
            undeclared.append(f"{name} (distribution {', '.join(sorted(dists))}; imported by {where})")
    assert not undeclared, "imported but not declared in pyproject.toml:\n  " + "\n  ".join(undeclared)
