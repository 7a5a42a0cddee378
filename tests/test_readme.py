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


# torch minor version -> the Triton minor version it pins (torch 2.13.0's Linux wheel: triton==3.7.1)
TRITON_OF_TORCH = {"2.13": "3.7"}


def windows_commands() -> str:
    readme = REPO.joinpath("README.md").read_text(encoding="utf-8")
    section = re.search(r"### Windows with an NVIDIA RTX card\n(.*?)\n## ", readme, re.S).group(1)
    return "\n".join(re.findall(r"```powershell\n(.*?)```", section, re.S))


def test_windows_section_pins_the_quick_starts_torch_with_its_triton():
    import tomllib

    torch_pin = re.search(r"torch==([\d.]+)", quick_start_commands()[0]).group(1)
    commands = windows_commands()
    cuda_installs = [line for line in commands.splitlines() if "--index-url" in line]
    assert len(cuda_installs) == 2 and all(f"torch=={torch_pin} " in line for line in cuda_installs)
    assert all("https://download.pytorch.org/whl/cu130" in line for line in cuda_installs)
    assert any("--force-reinstall --no-deps" in line for line in cuda_installs)  # replaces a CPU build
    assert commands.count('-e ".[windows-gpu]"') == 2
    assert "torch.cuda.is_available(), torch.version.cuda, triton.__version__" in commands

    pyproject = tomllib.loads(REPO.joinpath("pyproject.toml").read_text(encoding="utf-8"))
    (extra,) = pyproject["project"]["optional-dependencies"]["windows-gpu"]
    pinned = re.fullmatch(r"triton-windows==([\d.]+)\.post\d+; platform_system == 'Windows'", extra).group(1)
    assert pinned.rsplit(".", 1)[0] == TRITON_OF_TORCH[torch_pin.rsplit(".", 1)[0]]
    readme = REPO.joinpath("README.md").read_text(encoding="utf-8")
    assert extra.split(";")[0] in readme
