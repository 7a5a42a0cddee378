"""A NotaGen model's log-probability of whole pieces (teacher-forced): the summed log-likelihood of every
predicted char, `-model.char_losses(...)`, the quantity training minimises. DPO measures its pairs with it,
and the bar rewrite ranks its candidates by it."""
from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch

from pipelines.abc.tokenizer import pad_patches
from pipelines.model.network import NotaGen


def sequence_logprobs(model: NotaGen, patches: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Whole-piece log-probs (B,) in nats; differentiable when grad is on."""
    loss_sum, _chars = model.char_losses(patches, masks)
    return -loss_sum


@torch.no_grad()
def measure_logprobs(model: NotaGen, encoded: list[list[list[int]]], batch_size: int = 4,
                     autocast: Callable[[], contextlib.AbstractContextManager] | None = None) -> torch.Tensor:
    """Log-probs (N,) of encoded pieces, batched, without gradients; on the CPU in fp32.

    `autocast` makes a fresh autocast context per batch (e.g. `Amp.autocast`).
    """
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(encoded), batch_size):
        patches, masks = pad_patches(encoded[start:start + batch_size], model.config.patch_size)
        with autocast() if autocast is not None else contextlib.nullcontext():
            out.append(sequence_logprobs(model, patches.to(device), masks.to(device)).float().cpu())
    return torch.cat(out) if out else torch.zeros(0)
