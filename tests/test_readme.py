"""README's quick start and CI stay in step: .ci/run runs README's test command verbatim."""
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def quick_start_commands() -> list[str]:
    readme = REPO.joinpath("README.md").read_text(encoding="utf-8")
    block = re.search(r"## Quick start.*?```bash\n(.*?)```", readme, re.S).group(1)
    return [line for line in block.splitlines() if line and not line.startswith("#")]


def test_quick_start_has_two_commands():
    studio, tests = quick_start_commands()
    assert studio.endswith("notagen studio") and "pip install" in studio
    assert "pytest" in tests and "pip install" in tests


def test_ci_runs_readme_test_command_verbatim():
    ci = REPO.joinpath(".ci", "run").read_text(encoding="utf-8").splitlines()
    assert quick_start_commands()[1] in ci
