"""The model slot: a loaded model leaves its file free to be saved over (as Windows requires), and a file saved
over is loaded again."""
from __future__ import annotations

import shutil

import torch

from pipelines.generation.loading import ModelSlot
from pipelines.model.checkpoint import load_checkpoint, save_checkpoint
from tests.paths import TINY_MODEL


def test_a_loaded_model_file_can_be_saved_over_and_is_loaded_again(tmp_path, windows_replace):
    path = tmp_path / "runs" / "chorales" / "best.pth"
    path.parent.mkdir(parents=True)
    shutil.copy(TINY_MODEL, path)
    slot = ModelSlot()
    first = slot.get(path, device="cpu", dtype="fp32")
    assert slot.get(path, device="cpu", dtype="fp32") is first  # unchanged file: the same engine

    newer = load_checkpoint(path)
    with torch.no_grad():
        for param in newer.model.parameters():
            param.mul_(0.5)
    save_checkpoint(path, newer.model, newer.card)  # what a training run does to its best.pth
    assert windows_replace == []

    second = slot.get(path, device="cpu", dtype="fp32")
    assert second is not first
    weight = "char_level_decoder.base.transformer.wte.weight"
    assert torch.equal(second.model.state_dict()[weight], newer.model.state_dict()[weight])
    slot.unload()
