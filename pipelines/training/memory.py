"""How much GPU memory one training step needs: weights, gradients, AdamW, a frozen reference, activations.

One rough, documented estimate serves the Train tab (full fine-tuning or LoRA) and
DPO (a policy plus a frozen reference, a chosen and a rejected piece per pair); the
real peak is what `benchmarks/training.py` and `benchmarks/dpo_memory.py` measure.
Trained weights are fp32 with fp32 gradients and two fp32 AdamW moments (16 bytes a
trained parameter); a LoRA run keeps its frozen base in bf16; activations are those
of each sequence at full context in the autocast dtype, a checkpointed decoder
keeping only its block inputs plus one block's working set. H100 checks (NotaGen-X,
1024 patches): full fine-tuning estimated 10.5 GiB, measured 9.1; DPO estimated 13.7,
measured 12.2; LoRA r=16 estimated 3.3, measured 4.5.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from pipelines.model.config import VOCAB_SIZE, NotaGenConfig
from pipelines.model.network import count_parameters
from pipelines.training.config import LORA_TARGETS

_PER_TOKEN = 18  # hidden-sized values a GPT-2 block keeps per position for backward (ln, qkv, attn, mlp 4x, gelu 4x...)
# (in, out) sizes of each Conv1D a LoRA target names, in hidden sizes: "c_proj" is both the attention's and the MLP's.
_TARGET_SHAPES = {"c_attn": [(1, 3)], "c_proj": [(1, 1), (4, 1)], "c_fc": [(1, 4)]}
_SLACK = 1.1  # allocator fragmentation and workspaces


@dataclass
class MemoryEstimate:
    parameters: int  # of the model
    trained: int  # parameters that get gradients (all, or the LoRA adapters)
    weights: int  # bytes of the trained model's weights (frozen base included)
    gradients: int
    optimizer: int
    reference_weights: int  # a frozen reference model (DPO); 0 without one
    activations: int
    total: int

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        gib = 2 ** 30
        trained = "" if self.trained == self.parameters else f" ({self.trained / 1e6:.1f} M trained)"
        reference = f" + reference {self.reference_weights / gib:.1f}" if self.reference_weights else ""
        return (f"{self.parameters / 1e6:.0f} M parameters{trained}: weights {self.weights / gib:.1f} GiB + "
                f"gradients {self.gradients / gib:.1f} + AdamW {self.optimizer / gib:.1f}{reference} + activations "
                f"{self.activations / gib:.1f} = about {self.total / gib:.1f} GiB")


def lora_parameters(config: NotaGenConfig, rank: int, targets: tuple[str, ...] = LORA_TARGETS) -> int:
    """Parameters of rank-`rank` adapters on `targets` in every block of both decoders."""
    per_block = sum(rank * (i + o) * config.hidden_size for t in targets for i, o in _TARGET_SHAPES[t])
    return per_block * (config.patch_layers + config.char_layers)


def _stack(tokens: int, hidden: int, layers: int, width: int, checkpointed: bool) -> int:
    block = tokens * hidden * _PER_TOKEN * width
    if checkpointed:
        return tokens * hidden * width * layers + block
    return block * layers


def estimate_step_memory(config: NotaGenConfig, sequences: int = 1, precision: str = "bf16",
                         checkpointing: str = "char", lora_rank: int = 0,
                         reference_dtype: torch.dtype | None = None) -> MemoryEstimate:
    """Bytes of one optimizer step of `config` over `sequences` full-context pieces."""
    params = count_parameters(config)
    width = 4 if precision == "fp32" else 2
    if lora_rank:
        trained = lora_parameters(config, lora_rank)
        weights = params * width + 4 * trained  # the frozen base in the autocast dtype
    else:
        trained, weights = params, 4 * params
    patches = config.patch_length
    char_tokens = (patches - 1) * (config.patch_size + 1)
    per_sequence = (_stack(patches, config.hidden_size, config.patch_layers, width,
                           checkpointing in ("patch", "both"))
                    + _stack(char_tokens, config.hidden_size, config.char_layers, width,
                             checkpointing in ("char", "both"))
                    + char_tokens * VOCAB_SIZE * 4 * 2)  # fp32 logits and their gradient
    reference = params * torch.finfo(reference_dtype).bits // 8 if reference_dtype is not None else 0
    parts = dict(weights=weights, gradients=4 * trained, optimizer=8 * trained, reference_weights=reference,
                 activations=sequences * per_sequence)
    return MemoryEstimate(parameters=params, trained=trained, total=int(sum(parts.values()) * _SLACK), **parts)
