"""CLaMP-DPO iterations end to end on the CPU with the tiny upstream model.

The random tiny model writes no valid music, so the scored pieces come from real
scores (music21 corpus pieces in another key), fed through `candidate_source`; the
generation path is run on its own with the user's ratings making the pairs.
"""
import csv
import json
from pathlib import Path

import pytest
import torch

from pipelines.abc.prompts import parse_prompt
from pipelines.dpo import DPOConfig, HumanRating, run_dpo
from pipelines.dpo.preference import Candidate
from pipelines.errors import DPOError
from pipelines.model.checkpoint import ModelCard, load_checkpoint, save_checkpoint
from tests.paths import PREPROCESS, TINY_MODEL
from tests.training_data import PIECES, build_dataset, single_thread_torch  # noqa: F401 (autouse)

PRE = PREPROCESS
TINY = TINY_MODEL


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = build_dataset(tmp_path_factory.mktemp("data"), train=("bach_bwv66.6", "bach_bwv7.7"), eval_=())
    (root / "interleaved").mkdir()
    for name in ("bach_bwv66.6", "bach_bwv7.7"):
        (root / "interleaved" / f"{name}.abc").write_text((PRE / "interleaved" / f"{name}.abc").read_text(
            encoding="utf-8"), encoding="utf-8")
    return root


def real_pieces(iteration: int, model_path: Path) -> list[Candidate]:
    out = []
    for name, (_, period, composer, instrumentation) in PIECES.items():
        prompt = parse_prompt(f"{period}_{composer}_{instrumentation}")
        text = "\n".join(prompt.header_lines()) + "\n" + (PRE / "augmented" / "E" / f"{name}_E.abc").read_text(
            encoding="utf-8")
        abc = "X:1\n" + (PRE / "interleaved" / f"{name}.abc").read_text(encoding="utf-8")
        out.append(Candidate(name=name, text=text, abc=abc, prompt=prompt, source="given"))
    return out


def test_two_iterations_raise_the_margin(data, tmp_path):
    # the tiny model with a card that records meters and keys: each iteration's model keeps the record
    start, tiny = tmp_path / "tiny.pth", load_checkpoint(TINY)
    choices = {"Baroque_Bach, Johann Sebastian_Choral": {"meters": {"4/4": 2}, "keys": {"Amin": 2}}}
    save_checkpoint(start, tiny.model, ModelCard(config=tiny.card.config, header_choices=choices))
    config = DPOConfig(model=start, data_dir=data, out_dir=tmp_path / "run", iterations=2, samples=6, portion=0.34,
                       steps=6, lr=1e-3, device="cpu", seed=3)
    logs, progress = [], []
    result = run_dpo(config, candidate_source=real_pieces, on_log=logs.append,
                     on_progress=lambda d, t: progress.append((d, t)))
    assert result.status == "finished" and len(result.iterations) == 2
    for it in result.iterations:
        o = it.optimise
        assert o.steps == 6 and o.pairs == 2 and o.margin_after > o.margin_before  # chosen over rejected
        assert o.loss_first == pytest.approx(0.693147, abs=1e-4)  # log 2: policy == reference at the start
        assert o.reward_accuracy == 1.0
        assert o.chosen_logprob_after > o.chosen_logprob_before - 1.0  # the DPOP penalty holds the chosen piece up
    first, second = (tmp_path / "run" / f"iter_{k}" for k in (1, 2))
    pref = json.loads((first / "preference.json").read_text(encoding="utf-8"))
    assert [c["name"] for c in pref["chosen"]] == ["mozart_k155_movement2"]
    assert {c["name"] for c in pref["skipped"]} >= {"bach_bwv66.6", "bach_bwv7.7"}  # copies of the references
    assert all("plagiarism" in c["reason"] for c in pref["skipped"] if c["name"].startswith("bach"))
    assert len(pref["rejected"]) == 2 and all(c["score"] is not None for c in pref["rejected"])
    rows = list(csv.DictReader((first / "scores.csv").open(encoding="utf-8")))
    assert len(rows) == 6 and {r["decision"] for r in rows} <= {"chosen", "rejected", "skipped", "unused"}
    # each iteration starts from the last; checkpoints carry a card and the prompts
    assert result.iterations[1].start_model == str(first / "model.pth")
    one, two = load_checkpoint(first / "model.pth"), load_checkpoint(second / "model.pth")
    assert not one.upstream and "CLaMP-DPO iteration 2" in two.card.notes
    assert "Baroque_Bach, Johann Sebastian_Choral" in two.card.prompts
    assert one.card.header_choices == two.card.header_choices == choices
    assert (second / "prompts.txt").is_file()
    w = "char_level_decoder.base.transformer.h.0.mlp.c_fc.weight"
    assert not torch.equal(one.model.state_dict()[w], two.model.state_dict()[w])
    summary = json.loads((tmp_path / "run" / "summary.json").read_text(encoding="utf-8"))
    assert summary["status"] == "finished" and len(summary["mean_scores"]) == 3
    assert summary["mean_scores"] == pytest.approx(result.mean_scores)
    assert progress[-1][0] == progress[-1][1] and {r["event"] for r in logs} >= {"start", "step", "iteration", "end"}


def test_generation_with_ratings_and_cancel(data, tmp_path):
    bach = parse_prompt("Baroque_Bach, Johann Sebastian_Choral")
    good = (PRE / "interleaved" / "bach_bwv66.6.abc").read_text(encoding="utf-8")
    bad = (PRE / "interleaved" / "haydn_opus74no1_movement3.abc").read_text(encoding="utf-8")
    ratings = [HumanRating(good, 1, bach, name="library-1"), HumanRating(bad, -1, bach, name="library-2")]
    config = DPOConfig(model=TINY, data_dir=data, out_dir=tmp_path / "run", samples=2, generation_batch=2,
                       max_patches=3, steps=3, lr=1e-3, device="cpu")
    result = run_dpo(config, ratings=ratings)
    it = result.iterations[0]
    assert it.generated == 2 and it.scored == 0 and it.optimise.margin_after > it.optimise.margin_before
    samples = tmp_path / "run" / "iter_1" / "samples"
    assert len(list(samples.glob("*.raw.abc"))) == 2
    rows = list(csv.DictReader((tmp_path / "run" / "iter_1" / "scores.csv").open(encoding="utf-8")))
    assert [r["seed"] for r in rows[:2]] == ["2", "3"] and rows[0]["decision"] == "failed"
    assert {r["name"] for r in rows} >= {"library-1", "library-2"}

    stopped = DPOConfig(model=TINY, data_dir=data, out_dir=tmp_path / "stopped", samples=0, steps=50, lr=1e-3,
                        device="cpu", scorer="none")
    steps = []
    result = run_dpo(stopped, ratings=ratings, on_log=lambda r: steps.append(r) if r["event"] == "step" else None,
                     should_stop=lambda: len(steps) >= 2)
    assert result.status == "cancelled" and len(steps) == 2
    assert not (tmp_path / "stopped" / "iter_1" / "model.pth").exists()
    assert json.loads((tmp_path / "stopped" / "summary.json").read_text(encoding="utf-8"))["status"] == "cancelled"


def test_no_pairs_is_an_error(data, tmp_path):
    config = DPOConfig(model=TINY, data_dir=data, out_dir=tmp_path / "run", samples=2, max_patches=2, steps=1,
                       device="cpu")
    with pytest.raises(DPOError, match="no preference pairs"):
        run_dpo(config)
    with pytest.raises(DPOError, match="clamp2-weights"):
        DPOConfig(model=TINY, data_dir=data, out_dir=tmp_path, scorer="clamp2")
