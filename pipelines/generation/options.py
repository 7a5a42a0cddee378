"""What a generation call may be asked: sampling and limits, with the one home of their defaults and ranges.

Torch-free: the CLI's parser reads these fields (`pipelines.fields`) without loading torch;
the studio's generation spec mirrors them.
"""
from __future__ import annotations

from dataclasses import dataclass

from pipelines.errors import SettingError
from pipelines.fields import check_ranges, option

# Redraws of a tune-body line whose voices do not line up (differ in length or barline): the
# studio's and the CLI's default, measured on the demo model (docs/engine.md, "Bar redraws").
DEFAULT_BAR_RETRIES = 32


@dataclass(frozen=True)
class SamplingConfig:
    """Upstream's per-char sampling: top-k, then top-p, then temperature."""

    top_k: int = option(9, low=0, high=128, help="keep the k most likely chars (0: off)", label="top-k")
    top_p: float = option(0.9, low=0.0, low_open=True, high=1.0,
                          help="keep the smallest set of chars whose probability reaches p", label="top-p")
    temperature: float = option(1.2, low=0.05, high=5.0, help="flatten (> 1) or sharpen (< 1) the distribution")

    def __post_init__(self):
        check_ranges(self, SettingError)


@dataclass(frozen=True)
class GenerationLimits:
    """When a piece stops without an ending, and how hard the engine works at misaligned bars."""

    max_patches: int = option(0, low=0, help="generated patches per piece, redrawn ones included (0: no limit)",
                              label="max patches")
    max_chars: int = option(102_400, low=1, help="characters per piece (upstream's limit)", label="max chars")
    max_seconds: float = option(600.0, low=0.0, low_open=True, high=3600.0,
                                help="wall time for the whole batch, in seconds", label="time limit")
    # Redraws of a tune-body line (one bar of every voice) whose voices differ in length or
    # barline; after that many the line is kept. 0: keep every line, as upstream does.
    bar_retries: int = option(DEFAULT_BAR_RETRIES, low=0, high=100,
                              help="redraws of a bar line whose voices differ in length or barline "
                                   "(0: keep every line, as upstream)", label="bar redraws")

    def __post_init__(self):
        check_ranges(self, SettingError)
