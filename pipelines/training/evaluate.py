"""Held-out loss of a model: mean per-character cross-entropy in nats, as upstream's training loss."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from pipelines.abc.tokenizer import Patchilizer, pad_patches
from pipelines.model.network import NotaGen
from pipelines.training.data import encode_for_eval


@dataclass
class EvalResult:
    loss: float  # nats per predicted char
    chars: int  # predicted chars (every non-pad char of every patch after the first)
    pieces: int


@torch.no_grad()
def summed_loss(model: NotaGen, encoded: list[list[list[int]]], batch_size: int, autocast=contextlib.nullcontext,
                on_progress=None) -> torch.Tensor:
    """(summed cross-entropy in nats, predicted chars) over encoded pieces, float64 on the model's device."""
    device = next(model.parameters()).device
    total = torch.zeros(2, device=device, dtype=torch.float64)
    for start in range(0, len(encoded), batch_size):
        patches, masks = (t.to(device) for t in pad_patches(encoded[start:start + batch_size], model.config.patch_size))
        with autocast():
            loss_sum, chars = model.char_losses(patches, masks)
        total += torch.stack([loss_sum.sum().double(), chars.sum().double()])
        if on_progress:
            on_progress(min(start + batch_size, len(encoded)), len(encoded))
    return total


def evaluate_texts(model: NotaGen, texts: list[str], patchilizer: Patchilizer | None = None,
                   batch_size: int = 1, on_progress=None) -> EvalResult:
    """Loss over whole pieces; a piece longer than the patch length is cut as in training, with a fixed seed."""
    patchilizer = patchilizer or Patchilizer(patch_size=model.config.patch_size)
    model.eval()
    encoded = [encode_for_eval(patchilizer, t, model.config.patch_length) for t in texts]
    total, chars = summed_loss(model, encoded, batch_size, on_progress=on_progress).tolist()
    return EvalResult(loss=total / max(chars, 1), chars=int(chars), pieces=len(texts))
