"""How much GPU memory one DPO step needs: the training estimate with a frozen reference and two pieces a pair."""
from __future__ import annotations

import torch

from pipelines.model.config import NotaGenConfig
from pipelines.training.memory import MemoryEstimate, estimate_step_memory

__all__ = ["MemoryEstimate", "estimate_dpo_memory"]


def estimate_dpo_memory(config: NotaGenConfig, pairs_per_step: int = 1, precision: str = "bf16",
                        reference_dtype: torch.dtype = torch.bfloat16, checkpointing: str = "char") -> MemoryEstimate:
    """Bytes of one DPO step of `config` (e.g. `preset("notagen-x")`) at full context."""
    return estimate_step_memory(config, sequences=2 * pairs_per_step, precision=precision,
                                checkpointing=checkpointing, reference_dtype=reference_dtype)
