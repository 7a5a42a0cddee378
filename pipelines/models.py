"""Which models exist and which one is loaded: the default model, prompt vocabularies, one engine at a time.

A model's prompt vocabulary is its card's; an upstream file without a card takes a
`prompts.txt` beside it, and a NotaGen-X-shaped one the official list.
"""
from __future__ import annotations

import threading
from pathlib import Path

from .checkpoint import load_checkpoint
from .errors import NotaGenError, PromptError
from .generation import Engine
from .model import preset
from .prompts import Prompt, read_prompts
from .runtime import pick_runtime, release

REPO_ROOT = Path(__file__).resolve().parents[1]
ASSETS = REPO_ROOT / "assets"
DEMO_MODEL = ASSETS / "demo_model.pth"
NOTAGENX_PROMPTS = REPO_ROOT / "prompts.txt"


def default_model_path() -> Path:
    """The embedded demo model; an error naming what to do when it is missing."""
    if DEMO_MODEL.is_file():
        return DEMO_MODEL
    raise NotaGenError(f"no default model installed (expected {DEMO_MODEL}); choose a checkpoint file")


def prompt_vocabulary(path: Path, card) -> list[str]:
    if card.prompts:
        return list(card.prompts)
    beside = Path(path).with_name("prompts.txt")
    if beside.is_file():
        return [p.line for p in read_prompts(beside)]
    if card.config == preset("notagen-x") and NOTAGENX_PROMPTS.is_file():
        return [p.line for p in read_prompts(NOTAGENX_PROMPTS)]
    return []


def validate_prompt(card, prompt: Prompt) -> str:
    """Refuse a prompt outside the model's vocabulary; a model without one gets a warning (returned)."""
    if not card.prompts:
        return "this model records no prompt vocabulary; any prompt is accepted, but unknown ones may be ignored"
    if prompt.line not in card.prompts:
        choices = "\n  ".join(card.prompts)
        raise PromptError(f"{prompt.line!r} is not in this model's prompts; choose one of:\n  {choices}")
    return ""


def load_engine(path: Path, device: str | None = "auto", dtype: str | None = "auto") -> Engine:
    runtime = pick_runtime(device, dtype)
    ckpt = load_checkpoint(path, device="cpu")
    ckpt.card.prompts = prompt_vocabulary(path, ckpt.card)
    return Engine(ckpt.model, runtime, name=Path(path).name, card=ckpt.card)


class ModelSlot:
    """Holds at most one loaded engine, so a 24 GB card never carries two models."""

    def __init__(self):
        self._lock = threading.Lock()
        self._engine: Engine | None = None
        self._key: tuple | None = None

    def get(self, path: Path, device: str | None = "auto", dtype: str | None = "auto") -> Engine:
        key = (str(Path(path).resolve()), device, dtype)
        with self._lock:
            if self._key != key:
                self._drop()
                self._engine = load_engine(path, device, dtype)
                self._key = key
            return self._engine

    def loaded(self) -> Engine | None:
        return self._engine

    def unload(self):
        with self._lock:
            self._drop()

    def _drop(self):
        if self._engine is not None:
            device = self._engine.runtime.device
            self._engine.unload()
            self._engine, self._key = None, None
            release(device)
