"""LoRA adapters: trained small, loaded by `load_model` (generation's loader), merged exactly."""
from __future__ import annotations

import pytest
import torch

from pipelines.abc.tokenizer import Patchilizer, pad_patches
from pipelines.cli import main
from pipelines.errors import CheckpointError
from pipelines.model.checkpoint import ModelCard, save_checkpoint
from pipelines.model.config import preset
from pipelines.model.lora import load_model, load_with_adapter, merge_lora
from pipelines.model.network import NotaGen
from pipelines.training import TrainConfig, read_train_log, train
from pipelines.training.data import PieceEncoder, read_split
from tests.training_data import build_dataset, single_thread_torch  # noqa: F401 (autouse)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return build_dataset(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    path = tmp_path_factory.mktemp("base") / "base.pth"
    torch.manual_seed(3)
    save_checkpoint(path, NotaGen(preset("tiny")), ModelCard(config=preset("tiny"), prompts=["Romantic_Liszt, Franz_Keyboard"]))
    return path


@pytest.fixture(scope="module")
def lora_run(data, base, tmp_path_factory):
    out = tmp_path_factory.mktemp("lora")
    config = TrainConfig(data_dir=data, out_dir=out, base=str(base), lora_rank=4, lr=1e-2, warmup_steps=0,
                         max_steps=3, device="cpu")
    return train(config)


def eval_batch(data):
    encoder = PieceEncoder(data, Patchilizer(16), 64, 0, False)
    return pad_patches([encoder.encode_eval(p) for p in read_split(data, "eval")], 16)


def test_adapter_is_small_and_loads_as_a_plain_model(lora_run, base):
    assert lora_run.best_path.stat().st_size * 5 < base.stat().st_size
    loaded = load_model(lora_run.best_path)
    assert type(loaded.model) is NotaGen
    assert not any("lora" in name for name in loaded.model.state_dict())
    assert "Romantic_Liszt, Franz_Keyboard" in loaded.card.prompts
    assert "Baroque_Bach, Johann Sebastian_Choral" in loaded.card.prompts


def test_merged_model_equals_adapter_model(lora_run, base, data, tmp_path):
    patches, masks = eval_batch(data)
    model, _, _ = load_with_adapter(lora_run.best_path)  # adapters applied, not merged
    with torch.no_grad():
        adapted = model.eval().char_losses(patches, masks)[0]
        merged_path = merge_lora(lora_run.best_path, tmp_path / "merged.pth")
        merged = load_model(merged_path)
        assert merged.training is None and not merged.upstream
        merged_loss = merged.model.char_losses(patches, masks)[0]
        base_loss = load_model(base).model.char_losses(patches, masks)[0]
    torch.testing.assert_close(merged_loss, adapted, rtol=1e-5, atol=1e-4)
    assert (merged_loss - base_loss).abs().item() > 1e-2  # the adapter changed the model


def test_missing_base_is_named(lora_run, base, tmp_path):
    moved = tmp_path / "elsewhere.pth"
    base.rename(moved)
    try:
        with pytest.raises(CheckpointError, match="base.pth"):
            load_model(lora_run.best_path)
        assert merge_lora(lora_run.best_path, tmp_path / "m.pth", base_path=moved).is_file()
    finally:
        moved.rename(base)


def test_lora_run_resumes_exactly_and_merges_from_the_cli(data, base, tmp_path, windows_replace):
    def config(out, **kw):
        return TrainConfig(data_dir=data, out_dir=out, base=str(base), lora_rank=2, lr=5e-3, warmup_steps=1,
                           epochs=1, freeze_patch_decoder=True, device="cpu", **kw)

    whole = train(config(tmp_path / "whole"))
    done = []
    assert train(config(tmp_path / "split"), on_progress=lambda d, t: done.append(d),
                 should_stop=lambda: len(done) >= 2).status == "cancelled"
    resumed = train(config(tmp_path / "split", resume=True))
    losses = [[r["loss"] for r in read_train_log(res.log_path) if r["event"] == "step"] for res in (whole, resumed)]
    assert len(losses[0]) == 4 and losses[0] == losses[1]
    model, _, _ = load_with_adapter(resumed.last_path)
    assert not any("lora" in n for n, _ in model.patch_level_decoder.named_parameters())  # char decoder only
    assert main(["merge-lora", "--adapter", str(resumed.best_path), "--out", str(tmp_path / "cli.pth")]) == 0
    assert load_model(tmp_path / "cli.pth").card.config == preset("tiny")
