"""Which models exist: the built-in demo model, prompt vocabularies, and loading any model file.

A model's prompt vocabulary is its card's; an upstream file without a card takes a
`prompts.txt` beside it, and a NotaGen-X-shaped one the official list.
"""
from __future__ import annotations

import sysconfig
from pathlib import Path

from pipelines.abc.prompts import Prompt, read_prompts
from pipelines.errors import NotaGenError, PromptError
from pipelines.model.config import preset

# pip installs the shipped files (pyproject's [tool.setuptools.data-files]) into the environment's
# data folder under this name, keeping the layout they have in the repository.
INSTALLED_NAME = "share/notagen-studio"


def shipped_roots() -> list[Path]:
    """Where the files shipped beside the code (assets/, prompts.txt) are looked for, in this order:
    the source tree (a checkout or an editable install), then this environment's installed copy,
    then a `pip install --user` copy."""
    roots = [Path(__file__).resolve().parents[2]]
    for scheme in (sysconfig.get_default_scheme(), sysconfig.get_preferred_scheme("user")):
        root = Path(sysconfig.get_path("data", scheme)) / INSTALLED_NAME
        if root not in roots:
            roots.append(root)
    return roots


def find_shipped(relative: str) -> Path | None:
    """The first of `shipped_roots()` that holds `relative` (e.g. "assets/demo_model.pth"), or None."""
    return next((root / relative for root in shipped_roots() if (root / relative).is_file()), None)


def shipped_file(relative: str) -> Path:
    """A shipped file, or an error that names every place looked in."""
    found = find_shipped(relative)
    if found is None:
        places = "\n  ".join(str(root / relative) for root in shipped_roots())
        raise NotaGenError(f"{relative} is missing from this installation; looked in:\n  {places}\n"
                           "reinstall NotaGen Studio (pip install .) or choose a model file")
    return found


# Resolved once at import (a few file checks); when none holds the file, the source tree's path,
# which does not exist, so callers asking `.is_file()` get False.
DEMO_MODEL = find_shipped("assets/demo_model.pth") or shipped_roots()[0] / "assets/demo_model.pth"
NOTAGENX_PROMPTS = find_shipped("prompts.txt") or shipped_roots()[0] / "prompts.txt"


def default_model_path() -> Path:
    """The embedded demo model; an error naming where it was looked for when it is missing."""
    return shipped_file("assets/demo_model.pth")


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
