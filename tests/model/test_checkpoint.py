"""Checkpoint files on Windows' terms: nothing a loader returns keeps the file mapped, so it can be saved over."""
from __future__ import annotations

import shutil

import pytest
import torch

from pipelines.model.checkpoint import load_checkpoint, read_checkpoint_file, save_checkpoint
from pipelines.model.lora import load_model
from tests.paths import TINY_MODEL
from tests.windows_files import held, needs_proc

pytestmark = needs_proc


@pytest.fixture
def checkpoint(tmp_path):
    path = tmp_path / "run" / "last.pth"
    path.parent.mkdir()
    shutil.copy(TINY_MODEL, path)
    return path


def test_the_probe_sees_a_mapped_checkpoint(checkpoint):
    data = read_checkpoint_file(checkpoint)  # what torch.load(mmap=True) leaves: the file stays mapped
    assert held(checkpoint)
    del data
    assert not held(checkpoint)


@pytest.mark.parametrize("dtype", [None, torch.float16], ids=["as stored", "converted"])
def test_a_loaded_model_does_not_keep_its_file_mapped(checkpoint, dtype):
    loaded = load_checkpoint(checkpoint, dtype=dtype)
    assert not held(checkpoint)
    assert all(p.dtype == (dtype or torch.float32) for p in loaded.model.parameters())
    char = loaded.model.char_level_decoder.base
    assert char.lm_head.weight is char.transformer.wte.weight  # still tied after the copy
    assert load_model(checkpoint) is not None and not held(checkpoint)


def test_a_training_state_is_copied_out_of_the_file_too(checkpoint):
    model = load_checkpoint(checkpoint).model
    save_checkpoint(checkpoint, model, load_checkpoint(checkpoint).card,
                    training={"rng": torch.get_rng_state(), "optimizer": {"state": {0: {"exp_avg": torch.ones(3)}}}})
    loaded = load_checkpoint(checkpoint)
    assert torch.equal(loaded.training["optimizer"]["state"][0]["exp_avg"], torch.ones(3))
    assert not held(checkpoint)


def test_a_loaded_checkpoint_can_be_saved_over_as_on_windows(checkpoint, windows_replace):
    loaded = load_checkpoint(checkpoint)
    with torch.no_grad():
        next(loaded.model.parameters()).add_(1.0)
    save_checkpoint(checkpoint, loaded.model, loaded.card)
    assert windows_replace == []
    again = load_checkpoint(checkpoint).model.state_dict()
    assert all(torch.equal(again[k], v) for k, v in loaded.model.state_dict().items())


def test_windows_replace_refuses_a_mapped_file(checkpoint, windows_replace):
    data = read_checkpoint_file(checkpoint)  # a loader that kept this would fail on Windows
    with pytest.raises(PermissionError, match="another program holds it open"):
        save_checkpoint(checkpoint, load_checkpoint(checkpoint).model, load_checkpoint(checkpoint).card)
    assert windows_replace and not list(checkpoint.parent.glob(".*.tmp"))
    del data


def test_left_mapped_for_a_caller_that_moves_it_at_once(checkpoint):
    loaded = load_checkpoint(checkpoint, leave_mapped=True)  # what the GPU loader asks: no copy on the CPU
    assert held(checkpoint)
    loaded.model.to(dtype=torch.float16)  # the move to the GPU's device and dtype copies every weight
    assert not held(checkpoint)
