"""Import rules between the packages, and no import cycles inside pipelines/.

- pipelines/ never imports gradio or studio; studio/ never imports torch (or the ML stack) and
  reaches pipelines only through its service door.
- Inside pipelines/ the packages are layered: abc and the torch-free configs at the bottom, then
  model, render and generation, then dataset / training / dpo, then service and commands on top.
- The graph of pipelines/ has no cycle, counting imports inside functions too.
"""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ML_STACK = {"torch", "transformers", "accelerate", "peft"}


# ---------------------------------------------------------------------------------------------
# Reading imports


def _is_type_checking(test: ast.expr) -> bool:
    """`if TYPE_CHECKING:` or `if typing.TYPE_CHECKING:` (imports only a type checker runs)."""
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _runtime_nodes(tree: ast.AST, in_functions: bool) -> Iterable[ast.AST]:
    """The tree's nodes less `if TYPE_CHECKING:` bodies; function bodies too when `in_functions`."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)) and not in_functions:
            stack.extend([*getattr(node, "decorator_list", ()), *node.args.defaults, *node.args.kw_defaults])
        else:
            stack.extend(ast.iter_child_nodes(node))


def imported_names(path: Path, package: str = "", in_functions: bool = True) -> set[str]:
    """The dotted names a file imports; relative imports are resolved against `package`.

    `from a.b import c` gives both `a.b` and `a.b.c` (c may be a module or a name; the graph keeps
    what exists). `importlib.import_module("x")` with a literal name counts as an import of x.
    With `in_functions=False`, only what importing the file runs (no imports deferred into functions).
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names = set()
    for node in _runtime_nodes(tree, in_functions):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level and not package:  # unresolved: kept relative, so it names no top-level package
                base = "." * node.level + (node.module or "")
            elif node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            else:
                base = node.module
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module":
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                names.add(node.args[0].value)
    return names


def imported_roots(path: Path, in_functions: bool = True) -> set[str]:
    return {name.split(".")[0] for name in imported_names(path, in_functions=in_functions) if not name.startswith(".")}


def files(package: str, root: Path = REPO) -> list[Path]:
    found = sorted((root / package).rglob("*.py"))
    assert found, package
    return found


# ---------------------------------------------------------------------------------------------
# The import graph of one package


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_path(name: str, root: Path = REPO) -> Path:
    path = root.joinpath(*name.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def ancestors(name: str) -> list[str]:
    """`a.b.c` -> [`a`, `a.b`]: the packages Python initialises before the module itself."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def strings_naming_modules(path: Path, modules: set[str]) -> set[str]:
    """String literals that spell a module's full name: modules imported by name (cli's COMMAND_MODULES)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return {node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in modules}


def import_graph(package: str, root: Path = REPO, in_functions: bool = True) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (at module level, and inside functions unless told not to).

    Importing `p.a.b` also runs `p.a`'s `__init__`, so it is an edge too, except to the importer's
    own packages (already initialised when the importer runs).
    """
    paths = {module_name(path, root): path for path in files(package, root)}
    modules = set(paths)
    graph = {}
    for name, path in paths.items():
        own_package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        named = strings_naming_modules(path, modules) if in_functions else set()
        for imported in imported_names(path, own_package, in_functions) | named:
            for candidate in [*ancestors(imported), imported]:
                if candidate in modules and candidate != name and candidate not in ancestors(name):
                    targets.add(candidate)
        graph[name] = targets
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One cycle as [a, b, ..., a], or [] when the graph has none (depth-first, three colours)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return []

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return []


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    """The modules that importing `start` may run: itself, its packages, and what they import."""
    seen, todo = set(), [start, *ancestors(start)]
    while todo:
        node = todo.pop()
        if node in seen or node not in graph:
            continue
        seen.add(node)
        todo.extend(graph[node])
        todo.extend(ancestors(node))
    return seen


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph("pipelines")


@pytest.fixture(scope="module")
def import_time_graph() -> dict[str, set[str]]:
    return import_graph("pipelines", in_functions=False)


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def offenders(graph: dict[str, set[str]], importers: str, forbidden: Iterable[str]) -> list[str]:
    return [f"{src} imports {dst}" for src, targets in sorted(graph.items()) if within(src, importers)
            for dst in sorted(targets) if any(within(dst, f) for f in forbidden)]


# ---------------------------------------------------------------------------------------------
# pipelines/ <-> studio/


def test_pipelines_never_import_gradio_or_studio():
    for path in files("pipelines"):
        bad = imported_roots(path) & {"gradio", "gradio_client", "studio"}
        assert not bad, f"{path.relative_to(REPO)} imports {bad}"


def test_studio_never_imports_torch():
    for path in files("studio"):
        bad = imported_roots(path) & ML_STACK
        assert not bad, f"{path.relative_to(REPO)} imports {bad}"


STUDIO_DOORS = ("pipelines.service", "pipelines.errors", "pipelines.fields")


def test_studio_reaches_pipelines_only_through_the_service():
    bad = []
    for path in files("studio"):
        for name in sorted(imported_names(path)):
            if within(name, "pipelines") and not any(within(name, door) for door in STUDIO_DOORS):
                bad.append(f"{path.relative_to(REPO)} imports {name}")
    assert not bad, f"studio/ may import only {', '.join(STUDIO_DOORS)} from pipelines:\n  " + "\n  ".join(bad)


# ---------------------------------------------------------------------------------------------
# Inside pipelines/


def test_pipelines_have_no_import_cycle(graph):
    cycle = find_cycle(graph)
    assert not cycle, "import cycle: " + " -> ".join(cycle)


TORCH_FREE = ("pipelines.abc", "pipelines.model.config", "pipelines.generation.options", "pipelines.fields")


@pytest.mark.parametrize("module", TORCH_FREE)
def test_torch_free_modules_reach_no_torch(import_time_graph, module):
    """Importing these runs no module that imports the ML stack (imports deferred into functions aside)."""
    graph = import_time_graph
    starts = [m for m in graph if within(m, module)]
    assert starts, module
    reached = set().union(*(reachable(graph, m) for m in starts))
    bad = [f"{m} imports {sorted(roots)}" for m in sorted(reached)
           if (roots := imported_roots(module_path(m), in_functions=False) & ML_STACK)]
    assert not bad, f"{module} must not load torch, but it reaches:\n  " + "\n  ".join(bad)


def test_torch_free_modules_load_no_torch_in_a_fresh_interpreter():
    modules = [m for m in import_graph("pipelines") if any(within(m, free) for free in TORCH_FREE)]
    probe = ("import importlib, sys\n"
             f"for m in {modules!r}: importlib.import_module(m)\n"
             f"print(sorted(set(sys.modules) & {ML_STACK!r}))")
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", f"importing {', '.join(TORCH_FREE)} loaded {done.stdout.strip()}"


# What a fresh `notagen generate` loads before its first piece: torch, not the training stack (transformers, peft
# and accelerate took seconds of a first piece's wait).
TRAINING_STACK = {"transformers", "peft", "accelerate", "music21", "gradio", "pandas"}


def test_the_command_line_and_generation_load_no_training_stack():
    probe = ("import sys, launch\n"
             "from pipelines.cli import build_parser\n"
             "import pipelines.commands.generate, pipelines.generation.loading\n"
             "build_parser(launch.STUDIO_COMMANDS)\n"
             f"print(sorted({{m.split('.')[0] for m in sys.modules}} & {TRAINING_STACK!r}))")
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", f"the command line and the generation path loaded {done.stdout.strip()}"


LAYERS = {
    # importer: packages it must never import (lower layers never reach up)
    "pipelines.abc": ("pipelines.model", "pipelines.generation", "pipelines.render", "pipelines.dataset",
                      "pipelines.training", "pipelines.dpo", "pipelines.service", "pipelines.commands"),
    "pipelines.model": ("pipelines.generation", "pipelines.service", "pipelines.training", "pipelines.dpo",
                        "pipelines.dataset", "pipelines.render", "pipelines.commands"),
    "pipelines.generation": ("pipelines.service", "pipelines.training", "pipelines.dpo", "pipelines.commands"),
    "pipelines.render": ("pipelines.generation", "pipelines.service", "pipelines.training", "pipelines.dpo",
                         "pipelines.commands"),
}


@pytest.mark.parametrize("importer", sorted(LAYERS))
def test_lower_layers_never_import_upper_ones(graph, importer):
    bad = offenders(graph, importer, LAYERS[importer])
    assert not bad, f"{importer} sits below {', '.join(LAYERS[importer])}:\n  " + "\n  ".join(bad)


# Inside pipelines/, who may import pipelines.service (the studio's door). Today the CLI calls the
# layers below it directly; pipelines.commands may join if it comes to share the service's specs.
SERVICE_USERS = ("pipelines.service",)


def test_nothing_else_in_pipelines_imports_the_service(graph):
    bad = [line for line in offenders(graph, "pipelines", ["pipelines.service"])
           if not any(within(line.split()[0], user) for user in SERVICE_USERS)]
    assert not bad, f"only {', '.join(SERVICE_USERS)} may import pipelines.service:\n  " + "\n  ".join(bad)


# ---------------------------------------------------------------------------------------------
# The checkers themselves


def test_the_checker_sees_imports(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("import torch.nn\nfrom gradio import Blocks\n", encoding="utf-8")
    assert imported_roots(probe) == {"torch", "gradio"}


def _plant(root: Path, files_: dict[str, str]) -> None:
    for rel, text in files_.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_the_cycle_checker_finds_a_planted_cycle(tmp_path):
    """a -> (relative, inside a function) b -> (absolute, through a package) c -> a."""
    _plant(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "def f():\n    from .sub import b\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/b.py": "from pkg.c import thing\n",
        "pkg/c.py": "import pkg.a\nthing = 1\n",
        "pkg/d.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import d\n",
    })
    graph = import_graph("pkg", tmp_path)
    assert graph["pkg.a"] == {"pkg.sub", "pkg.sub.b"}
    assert graph["pkg.d"] == set()  # a type checker's import is no edge
    assert find_cycle(graph) == ["pkg.a", "pkg.sub.b", "pkg.c", "pkg.a"]
    graph["pkg.c"] = set()
    assert find_cycle(graph) == []


def test_the_graph_sees_a_package_init_that_imports_back(tmp_path):
    """`from pkg.x import y` runs pkg/x/__init__.py, which may import the importer: a cycle."""
    _plant(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/x/__init__.py": "from pkg.x.y import f\n",
        "pkg/x/y.py": "from pkg.z import g\n",
        "pkg/x/w.py": "",
        "pkg/z.py": "from pkg.x.w import h\n",
    })
    assert find_cycle(import_graph("pkg", tmp_path)) == ["pkg.x", "pkg.x.y", "pkg.z", "pkg.x"]


def test_the_torch_check_follows_the_graph_at_import_time(tmp_path):
    _plant(tmp_path, {"pkg/__init__.py": "", "pkg/light.py": "from pkg import heavy\n",
                      "pkg/heavy.py": "import torch\nfrom pkg import lazy\n",
                      "pkg/lazy.py": "def f():\n    import peft\n    from pkg import light\n"})
    at_import = import_graph("pkg", tmp_path, in_functions=False)
    assert reachable(at_import, "pkg.light") == {"pkg", "pkg.light", "pkg.heavy", "pkg.lazy"}
    assert imported_roots(tmp_path / "pkg/heavy.py", in_functions=False) == {"torch", "pkg"}
    assert imported_roots(tmp_path / "pkg/lazy.py", in_functions=False) == set()
    assert at_import["pkg.lazy"] == set() and import_graph("pkg", tmp_path)["pkg.lazy"] == {"pkg.light"}
