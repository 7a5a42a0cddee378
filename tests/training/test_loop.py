"""Training runs on CPU with the tiny preset on a real (fixture) dataset."""
from __future__ import annotations

import json

import pytest
import torch

from pipelines.abc.prompts import read_prompts
from pipelines.abc.tokenizer import Patchilizer, pad_patches
from pipelines.errors import TrainingError
from pipelines.model.checkpoint import ModelCard, load_checkpoint, save_checkpoint
from pipelines.model.config import preset
from pipelines.model.network import NotaGen
from pipelines.training import TrainConfig, read_train_log, train
from pipelines.training.data import PieceEncoder, read_split
from tests.training_data import build_dataset, single_thread_torch  # noqa: F401 (autouse)


def steps(result):
    return [r for r in read_train_log(result.log_path) if r["event"] == "step"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return build_dataset(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def scratch_run(data, tmp_path_factory):
    """Two epochs from scratch; shared by the checks that only read its outputs."""
    out = tmp_path_factory.mktemp("scratch")
    config = TrainConfig(data_dir=data, out_dir=out, preset="tiny", epochs=2, lr=2e-3, warmup_steps=2,
                         device="cpu", patience=0)
    records = []
    result = train(config, on_log=records.append)
    return result, records


def test_loss_falls_on_real_data(scratch_run):
    result, _ = scratch_run
    losses = [r["loss"] for r in steps(result)]
    assert result.status == "finished" and len(losses) == 8
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4 - 0.4
    evals = [r["eval_loss"] for r in read_train_log(result.log_path) if r["event"] == "eval"]
    assert len(evals) == 2 and evals[-1] < evals[0]
    assert result.best_eval_loss == min(evals)


def test_best_checkpoint_is_the_best_model_and_loads(scratch_run, data):
    result, _ = scratch_run
    best = load_checkpoint(result.best_path)
    assert best.training is None and best.card.config == preset("tiny")
    # Its loss on the eval split is the logged best eval loss.
    pieces = read_split(data, "eval")
    encoder = PieceEncoder(data, Patchilizer(16), 64, 0, False)
    patches, masks = pad_patches([encoder.encode_eval(p) for p in pieces], 16)
    loss_sum, chars = best.model.char_losses(patches, masks)
    assert (loss_sum.sum() / chars.sum()).item() == pytest.approx(result.best_eval_loss, rel=1e-5)
    last = load_checkpoint(result.last_path)
    assert last.training["step"] == 8 and last.training["status"] == "finished"


def test_callbacks_report_progress(scratch_run):
    result, records = scratch_run
    step_records = [r for r in records if r["event"] == "step"]
    assert [r["step"] for r in step_records] == list(range(1, 9))
    for r in step_records:
        assert r["total_steps"] == 8 and r["chars_per_s"] > 0 and r["eta_s"] >= 0 and r["lr"] > 0
    assert step_records[-1]["eta_s"] == 0
    assert records[0]["event"] == "start" and records[-1] == read_train_log(result.log_path)[-1]


def test_prompts_written_beside_checkpoint(scratch_run, data):
    result, _ = scratch_run
    written = [p.line for p in read_prompts(result.prompts_path)]
    assert written == [p.line for p in read_prompts(data / "prompts.txt")]
    assert load_checkpoint(result.best_path).card.prompts == written


def test_prompt_vocabulary_and_header_choices_are_base_plus_dataset(data, tmp_path):
    base = tmp_path / "base.pth"
    torch.manual_seed(0)
    chopin = {"Romantic_Chopin, Frederic_Keyboard": {"meters": {"3/4": 4}, "keys": {"Db": 4}},
              "Baroque_Bach, Johann Sebastian_Choral": {"meters": {"3/4": 1}, "keys": {"Emin": 1}}}
    save_checkpoint(base, NotaGen(preset("micro")), ModelCard(config=preset("micro"),
                                                             prompts=["Romantic_Chopin, Frederic_Keyboard"],
                                                             header_choices=chopin))
    out = tmp_path / "run"
    result = train(TrainConfig(data_dir=data, out_dir=out, base=str(base), max_steps=1, device="cpu"))
    expected = sorted({"Romantic_Chopin, Frederic_Keyboard", *(p.line for p in read_prompts(data / "prompts.txt"))})
    assert [p.line for p in read_prompts(out / "prompts.txt")] == expected
    card = load_checkpoint(result.best_path).card
    assert card.prompts == expected and card.base_model == "base.pth"
    # the meters and keys per prompt: the base card's plus the dataset's record, counts added
    dataset = json.loads((data / "header_choices.json").read_text(encoding="utf-8"))["prompts"]
    bach = dataset["Baroque_Bach, Johann Sebastian_Choral"]
    assert bach["meters"] == {"4/4": 2} and bach["keys"]["Emin"] == 2  # the two chorales of the fixture
    assert card.header_choices["Romantic_Chopin, Frederic_Keyboard"] == chopin["Romantic_Chopin, Frederic_Keyboard"]
    assert card.header_choices["Baroque_Bach, Johann Sebastian_Choral"] == {
        "meters": {"3/4": 1, "4/4": 2}, "keys": {**bach["keys"], "Emin": 3}}
    assert set(card.header_choices) == set(dataset) | {"Romantic_Chopin, Frederic_Keyboard"}
    assert load_checkpoint(result.last_path).training["base_header_choices"] == chopin  # a resume keeps the base's


def resume_config(data, out, **kw):
    return TrainConfig(data_dir=data, out_dir=out, preset="tiny", epochs=2, lr=1e-3, warmup_steps=3,
                       grad_accum=2, device="cpu", patience=0, **kw)


def test_cancelled_run_resumes_on_the_identical_trajectory(data, tmp_path, windows_replace):
    whole = train(resume_config(data, tmp_path / "whole"))
    reference = steps(whole)
    assert len(reference) == 4

    done = []
    cancelled = train(resume_config(data, tmp_path / "split"), on_progress=lambda d, t: done.append(d),
                      should_stop=lambda: len(done) >= 3)  # stop mid-epoch 2, after an accumulated step
    assert cancelled.status == "cancelled" and cancelled.step == 3
    assert load_checkpoint(cancelled.last_path).training["group"] == 1
    with pytest.raises(TrainingError, match="already holds a run"):
        train(resume_config(data, tmp_path / "split"))
    resumed = train(resume_config(data, tmp_path / "split", resume=True))
    assert resumed.status == "finished"

    got = steps(resumed)
    assert [r["step"] for r in got] == list(range(1, 5))
    assert [r["loss"] for r in got] == [r["loss"] for r in reference]  # exact, dropout included
    assert [r["lr"] for r in got] == [r["lr"] for r in reference]
    a = load_checkpoint(whole.last_path).model.state_dict()
    b = load_checkpoint(resumed.last_path).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    log = read_train_log(resumed.log_path)
    assert [r["event"] for r in log if r["event"] in ("start", "resume", "end")] == ["start", "end", "resume", "end"]


def test_resume_refuses_changed_schedule(data, tmp_path):
    train(resume_config(data, tmp_path / "run", max_steps=1))
    with pytest.raises(TrainingError, match="grad_accum"):
        train(TrainConfig(data_dir=data, out_dir=tmp_path / "run", preset="tiny", epochs=2, lr=1e-3,
                          warmup_steps=3, grad_accum=1, max_steps=1, device="cpu", patience=0, resume=True))


def test_warmup_is_applied_to_the_stepping_optimizer(data, tmp_path):
    result = train(TrainConfig(data_dir=data, out_dir=tmp_path / "run", preset="micro", lr=1e-3, warmup_steps=3,
                               schedule="linear", min_lr_ratio=0.0, epochs=2, device="cpu"))
    lrs = [r["lr"] for r in steps(result)]
    # Warm-up 1/3, 2/3, 3/3 of the peak, then linear decay to 0 over the remaining 5 of 8 steps.
    assert lrs == pytest.approx([1e-3 / 3, 2e-3 / 3, 1e-3, 1e-3, 8e-4, 6e-4, 4e-4, 2e-4])


def test_freeze_patch_decoder_keeps_it_unchanged(data, tmp_path):
    base = tmp_path / "base.pth"
    torch.manual_seed(1)
    save_checkpoint(base, NotaGen(preset("micro")), ModelCard(config=preset("micro")))
    result = train(TrainConfig(data_dir=data, out_dir=tmp_path / "run", base=str(base), lr=1e-3, max_steps=2,
                               warmup_steps=0, freeze_patch_decoder=True, device="cpu"))
    before = load_checkpoint(base).model.state_dict()
    after = load_checkpoint(result.last_path).model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("patch_level_decoder."))
    assert not torch.equal(before["char_level_decoder.base.transformer.h.0.mlp.c_fc.weight"],
                           after["char_level_decoder.base.transformer.h.0.mlp.c_fc.weight"])


def test_original_key_only_reads_original_files(data, tmp_path):
    # With augmentation off, removing every transposed file must not matter.
    import shutil

    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    for path in (copy / "augmented").rglob("*.abc"):
        stem_key = path.stem.rsplit("_", 1)[1]
        name = path.stem.rsplit("_", 1)[0]
        original = {json.loads(l)["path"].rsplit("/", 1)[1]: json.loads(l)["key"]
                    for split in ("train", "eval") for l in (copy / f"{split}.jsonl").read_text().splitlines()}
        if original[name] != stem_key:
            path.unlink()
    result = train(TrainConfig(data_dir=copy, out_dir=tmp_path / "run", preset="micro", max_steps=2,
                               key_augment=False, device="cpu"))
    assert result.status == "max_steps"
    with pytest.raises(TrainingError, match="missing"):
        train(TrainConfig(data_dir=copy, out_dir=tmp_path / "run2", preset="micro", max_steps=2, device="cpu"))


def test_config_rejects_lora_from_scratch(tmp_path):
    with pytest.raises(TrainingError, match="LoRA"):
        TrainConfig(data_dir=tmp_path, out_dir=tmp_path, preset="tiny", lora_rank=4)
    with pytest.raises(TrainingError, match="exactly one"):
        TrainConfig(data_dir=tmp_path, out_dir=tmp_path)


def test_worker_processes_encode_the_same_batches_and_run(data, tmp_path, scratch_run):
    """Batches prepared ahead by 2 worker processes are the in-process ones; the run is identical."""
    from pipelines.training.data import RunBatches, batch_stream

    pieces = read_split(data, "train")
    batches = RunBatches(PieceEncoder(data, Patchilizer(16), 64, 0, True), pieces, rank=0, world=1, batch_size=3)
    start = batches.per_epoch - 1  # crosses into the next epoch
    here = [batches[k] for k in range(start, start + 3)]
    ahead = batch_stream(batches, start, workers=2, pin=False)
    for mine in here:
        theirs = next(ahead)
        assert all(torch.equal(a, b) for a, b in zip(mine, theirs))
    result, _ = scratch_run
    config = TrainConfig(data_dir=data, out_dir=tmp_path / "w", preset="tiny", epochs=2, lr=2e-3, warmup_steps=2,
                         device="cpu", patience=0, data_workers=2)
    assert [r["loss"] for r in steps(train(config))] == [r["loss"] for r in steps(result)]
