"""How much GPU memory one DPO step needs: the trained policy, its optimiser, the frozen reference, activations.

A rough, documented estimate (the real peak is measured by `notagen dpo` on CUDA):
the policy keeps fp32 weights, fp32 gradients and two fp32 AdamW moments (16 bytes a
parameter); the reference keeps its weights only (2 bytes in bf16); activations are
those of one chosen and one rejected piece per pair at full context, in the autocast
dtype, with the checkpointed decoder(s) keeping only their block inputs plus one
block's working set.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from ..model import VOCAB_SIZE, NotaGenConfig, count_parameters

_PER_TOKEN = 18  # hidden-sized values a GPT-2 block keeps per position for backward (ln, qkv, attn, mlp 4x, gelu 4x...)


@dataclass
class MemoryEstimate:
    parameters: int
    policy_weights: int
    gradients: int
    optimizer: int
    reference_weights: int
    activations: int
    total: int

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        gib = 2 ** 30
        return (f"{self.parameters / 1e6:.0f}M parameters: policy {self.policy_weights / gib:.1f} GiB + gradients "
                f"{self.gradients / gib:.1f} + AdamW {self.optimizer / gib:.1f} + reference "
                f"{self.reference_weights / gib:.1f} + activations {self.activations / gib:.1f} "
                f"= {self.total / gib:.1f} GiB")


def _stack(tokens: int, hidden: int, layers: int, width: int, checkpointed: bool) -> int:
    block = tokens * hidden * _PER_TOKEN * width
    if checkpointed:
        return tokens * hidden * width * layers + block
    return block * layers


def estimate_dpo_memory(config: NotaGenConfig, pairs_per_step: int = 1, precision: str = "bf16",
                        reference_dtype: torch.dtype = torch.bfloat16, checkpointing: str = "char") -> MemoryEstimate:
    """Bytes of one DPO step of `config` (e.g. `preset("notagen-x")`) at full context."""
    params = count_parameters(config)
    width = 4 if precision == "fp32" else 2
    sequences = 2 * pairs_per_step
    patches = config.patch_length
    char_tokens = (patches - 1) * (config.patch_size + 1)
    per_sequence = (_stack(patches, config.hidden_size, config.patch_layers, width,
                           checkpointing in ("patch", "both"))
                    + _stack(char_tokens, config.hidden_size, config.char_layers, width,
                             checkpointing in ("char", "both"))
                    + char_tokens * VOCAB_SIZE * 4 * 2)  # fp32 logits and their gradient
    activations = sequences * per_sequence
    reference = params * torch.finfo(reference_dtype).bits // 8
    parts = dict(policy_weights=4 * params, gradients=4 * params, optimizer=8 * params,
                 reference_weights=reference, activations=activations)
    return MemoryEstimate(parameters=params, total=int(sum(parts.values()) * 1.1), **parts)  # 10% allocator slack
