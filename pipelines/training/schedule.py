"""Learning-rate schedule: linear warm-up, then cosine or linear decay (or constant).

`lr_factor(step)` is the multiplier of the base rate used by the optimizer step
number `step` (0-based). It is a plain picklable object, so a `LambdaLR` built
on it saves and restores exactly with the rest of the training state. Upstream
built its warm-up scheduler on an optimizer it then replaced, so its warm-up
never applied; `build_scheduler` takes the optimizer that will actually step.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class WarmupDecay:
    warmup_steps: int
    total_steps: int
    schedule: str = "cosine"  # cosine | linear | constant
    min_ratio: float = 0.1

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.schedule == "constant":
            return 1.0
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        if self.schedule == "linear":
            shape = 1.0 - progress
        else:
            shape = 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.min_ratio + (1.0 - self.min_ratio) * shape


def build_scheduler(optimizer: torch.optim.Optimizer, factor: WarmupDecay) -> torch.optim.lr_scheduler.LambdaLR:
    """A scheduler on `optimizer` itself: from here on its groups' lr follow `factor`."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=factor)
