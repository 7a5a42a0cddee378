"""Import rules: pipelines/ never imports gradio or studio; studio/ never imports torch."""
import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "import_module" and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                roots.add(arg.value.split(".")[0])
    return roots


def files(package: str) -> list[Path]:
    found = sorted((REPO / package).rglob("*.py"))
    assert found, package
    return found


def test_pipelines_never_import_gradio_or_studio():
    for path in files("pipelines"):
        bad = imported_roots(path) & {"gradio", "gradio_client", "studio"}
        assert not bad, f"{path.relative_to(REPO)} imports {bad}"


def test_studio_never_imports_torch():
    for path in files("studio"):
        bad = imported_roots(path) & {"torch", "transformers", "accelerate", "peft"}
        assert not bad, f"{path.relative_to(REPO)} imports {bad}"


def test_the_checker_sees_imports(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("import torch.nn\nfrom gradio import Blocks\n", encoding="utf-8")
    assert imported_roots(probe) == {"torch", "gradio"}
