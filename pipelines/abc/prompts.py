"""Prompt vocabulary: Period_Composer_Instrumentation lines and the header lines they stand for.

A training piece starts with four lines before its first `[V:` line:
`%Baroque`, `%Bach, Johann Sebastian`, `%Choral`, `%end`. Generation is prompted
with the first three; the model writes `%end` and the rest.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pipelines.errors import PromptError
from pipelines.files import atomic_write_text, read_text, safe_stem


@dataclass(frozen=True, order=True)
class Prompt:
    period: str
    composer: str
    instrumentation: str

    def __post_init__(self):
        for name, value in (("period", self.period), ("composer", self.composer),
                            ("instrumentation", self.instrumentation)):
            if not value or value != value.strip():
                raise PromptError(f"{name} {value!r} is empty or has surrounding spaces")
            if not value.isascii() or "\n" in value or "_" in value:
                raise PromptError(f"{name} {value!r} must be ASCII on one line, without '_'")

    @property
    def line(self) -> str:
        return f"{self.period}_{self.composer}_{self.instrumentation}"

    def file_stem(self, seed: int) -> str:
        """The file name of the piece written from this prompt with `seed`."""
        return safe_stem(f"{self.period}-{self.composer}-{self.instrumentation}-seed{seed}")

    def header_lines(self, with_end: bool = True) -> list[str]:
        lines = [f"%{self.period}", f"%{self.composer}", f"%{self.instrumentation}"]
        return lines + ["%end"] if with_end else lines


def parse_prompt(line: str) -> Prompt:
    parts = line.strip().split("_")
    if len(parts) != 3:
        raise PromptError(f"{line!r} is not Period_Composer_Instrumentation")
    return Prompt(*parts)


def read_prompts(path: str | os.PathLike) -> list[Prompt]:
    path = Path(path)
    try:
        text = read_text(path)
    except FileNotFoundError:
        raise PromptError(f"{path}: no such prompts file") from None
    prompts = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                prompts.append(parse_prompt(line))
            except PromptError as e:
                raise PromptError(f"{path}:{n}: {e}") from None
    return prompts


def write_prompts(path: str | os.PathLike, prompts) -> None:
    unique = sorted(set(prompts))
    atomic_write_text(path, "".join(p.line + "\n" for p in unique))


def periods(prompts: list[Prompt]) -> list[str]:
    return sorted({p.period for p in prompts})


def composers(prompts: list[Prompt], period: str) -> list[str]:
    return sorted({p.composer for p in prompts if p.period == period})


def instrumentations(prompts: list[Prompt], period: str, composer: str) -> list[str]:
    return sorted({p.instrumentation for p in prompts if p.period == period and p.composer == composer})
