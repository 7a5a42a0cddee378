"""Held-out loss of a model: mean per-character cross-entropy in nats, as upstream's training loss."""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import AbcError
from .model import NotaGen
from .tokenizer import Patchilizer, pad_patches


@dataclass
class EvalResult:
    loss: float  # nats per predicted char
    chars: int  # predicted chars (every non-pad char of every patch after the first)
    pieces: int


def read_abc(path: Path) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AbcError(f"{path}: no such file") from None
    except UnicodeDecodeError as e:
        raise AbcError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    if "V:" not in text and "|" not in text:
        raise AbcError(f"{path}: no tune body found (no bars or voices)")
    return text


def dataset_files(data_dir: Path, split: str = "eval") -> list[Path]:
    """The pieces of a dataset split (`eval.jsonl`), with their headers, in the original key."""
    from .training.data import piece_file, read_split  # the one reader of a dataset's index

    return [piece_file(Path(data_dir), piece, piece.key) for piece in read_split(Path(data_dir), split)]


@torch.no_grad()
def evaluate_texts(model: NotaGen, texts: list[str], patchilizer: Patchilizer | None = None,
                   batch_size: int = 1, on_progress=None) -> EvalResult:
    """Loss over whole pieces; a piece longer than the patch length is cut as in training, with a fixed seed."""
    patchilizer = patchilizer or Patchilizer(patch_size=model.config.patch_size)
    device = next(model.parameters()).device
    model.eval()
    total, chars = 0.0, 0
    for start in range(0, len(texts), batch_size):
        chunk = texts[start:start + batch_size]
        encoded = [patchilizer.encode_train(t, model.config.patch_length, rng=random.Random(0)) for t in chunk]
        patches, masks = pad_patches(encoded, model.config.patch_size)
        loss_sum, n = model.char_losses(patches.to(device), masks.to(device))
        total += loss_sum.sum().item()
        chars += int(n.sum().item())
        if on_progress:
            on_progress(min(start + batch_size, len(texts)), len(texts))
    return EvalResult(loss=total / max(chars, 1), chars=chars, pieces=len(texts))
