"""Studio settings, one JSON file in the workspace (`settings.json`), read and written as a typed dataclass."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from pipelines.errors import WorkspaceError
from pipelines.files import atomic_write_text, read_text


@dataclass
class Settings:
    device: str = "auto"  # auto, cuda, cuda:1, mps, cpu
    dtype: str = "auto"  # auto (fp16 on GPU, fp32 on CPU), fp16, bf16, fp32
    soundfont: str = ""  # a .sf2 inside the workspace (relative path); "": the bundled General MIDI one
    max_pieces: int = 8  # pieces one generation request may ask for


def read_settings(path: str | Path) -> Settings:
    """The settings in `path`; defaults when the file does not exist yet. Unknown keys are ignored."""
    path = Path(path)
    if not path.is_file():
        return Settings()
    try:
        data = json.loads(read_text(path))  # Notepad may add a BOM
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise WorkspaceError(f"{path}: not a settings file ({e}); fix or delete it") from None
    if not isinstance(data, dict):
        raise WorkspaceError(f"{path}: not a settings file (expected a JSON object)")
    known = {f.name for f in fields(Settings)}
    return Settings(**{k: v for k, v in data.items() if k in known})


def write_settings(path: str | Path, settings: Settings) -> None:
    atomic_write_text(path, json.dumps(asdict(settings), indent=2) + "\n")
