"""Which models exist: the built-in demo model, prompt vocabularies, and loading any model file.

A model's prompt vocabulary is its card's; an upstream file without a card takes a
`prompts.txt` beside it, and a NotaGen-X-shaped one the official list.
"""
from __future__ import annotations

from pathlib import Path

from pipelines.abc.prompts import Prompt, read_prompts
from pipelines.errors import NotaGenError, PromptError
from pipelines.model.config import preset

REPO_ROOT = Path(__file__).resolve().parents[2]
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
