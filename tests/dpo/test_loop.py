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
from pipelines.dpo import DPOConfig, HumanPair, HumanRating, run_dpo
from pipelines.dpo.loop import split_heldout
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


def unfinished_pieces(iteration: int, model_path: Path) -> list[Candidate]:
    """Pieces cut off by the patch limit (their text cut mid-line, as the engine leaves it)."""
    out = []
    for name, (_, period, composer, instrumentation) in PIECES.items():
        prompt = parse_prompt(f"{period}_{composer}_{instrumentation}")
        body = (PRE / "augmented" / "E" / f"{name}_E.abc").read_text(encoding="utf-8")
        text = "\n".join(prompt.header_lines()) + "\n" + body[:len(body) // 3]
        out.append(Candidate(name=f"{name}_unfinished", text=text, abc=None, prompt=prompt, source="given",
                             status="limit", problem="reached the 300-patch limit without an ending"))
    return out


def real_then_unfinished(iteration: int, model_path: Path) -> list[Candidate]:
    return real_pieces(iteration, model_path) if iteration == 1 else unfinished_pieces(iteration, model_path)


def test_two_iterations_raise_the_margin(data, tmp_path):
    # the tiny model with a card that records meters and keys: each iteration's model keeps the record
    start, tiny = tmp_path / "tiny.pth", load_checkpoint(TINY)
    choices = {"Baroque_Bach, Johann Sebastian_Choral": {"meters": {"4/4": 2}, "keys": {"Amin": 2}}}
    save_checkpoint(start, tiny.model, ModelCard(config=tiny.card.config, header_choices=choices))
    config = DPOConfig(model=start, data_dir=data, out_dir=tmp_path / "run", iterations=2, samples=6, portion=0.34,
                       steps=6, lr=1e-4, device="cpu", seed=3, min_pairs=1, holdout=0.0)
    logs, progress = [], []
    result = run_dpo(config, candidate_source=real_pieces, on_log=logs.append,
                     on_progress=lambda d, t: progress.append((d, t)))
    assert result.status == "finished" and len(result.iterations) == 2
    for it in result.iterations:
        o = it.optimise
        # one chosen piece (mozart); rejected: the bottom two by score, and the copies and the misaligned piece
        assert it.chosen == 1 and it.rejected == 5 and o.pairs == it.pairs == 5
        assert o.steps == 6 and o.margin_after > o.margin_before  # chosen over rejected
        assert o.loss_first == pytest.approx(0.693147, abs=1e-4)  # log 2: policy == reference at the start
        assert o.reward_accuracy > 0.5
        assert o.chosen_logprob_after > o.chosen_logprob_before - 1.0  # the DPOP penalty holds the chosen piece up
    first, second = (tmp_path / "run" / f"iter_{k}" for k in (1, 2))
    pref = json.loads((first / "preference.json").read_text(encoding="utf-8"))
    assert [c["name"] for c in pref["chosen"]] == ["mozart_k155_movement2"]
    copies = [c for c in pref["rejected"] if c["name"].startswith("bach")]
    assert len(copies) == 2 and all("plagiarism" in c["reason"] for c in copies)  # copies of the references
    assert all(c["score"] is not None for c in pref["rejected"])
    rows = list(csv.DictReader((first / "scores.csv").open(encoding="utf-8")))
    assert len(rows) == 6 and {r["decision"] for r in rows} <= {"chosen", "rejected", "unused"}
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
    # the same pieces each time: three measurements, each 6 of 6 ended, 3 usable (mozart, beethoven, schumann)
    assert [m["label"] for m in summary["models"]] == ["starting model", "after iteration 1", "after iteration 2"]
    assert all((m["pieces"], m["ended"], m["usable"]) == (6, 6, 3) for m in summary["models"])
    assert not any(r.lowered_usable for r in result.iterations) and result.final_model == second / "model.pth"
    assert {r["event"] for r in logs} >= {"start", "stage", "scored", "step", "iteration", "end"}
    # every stage says what it does, then counts its own work from 0 to its total
    stages = [r["text"] for r in logs if r["event"] == "stage"]
    assert stages[:2] == ["iteration 1 of 2: writing 6 pieces of up to 800 patches",
                          "iteration 1 of 2: learning from 5 pairs (1 chosen, 5 rejected pieces), up to 6 steps"]
    assert stages[-1] == "the final model: writing 6 pieces of up to 800 patches" and len(stages) == 5
    starts = [i for i, (done, _) in enumerate(progress) if done == 0]
    assert len(starts) == 5 and progress[-1][0] == progress[-1][1]
    assert progress[starts[1]:starts[2]] == [(step, 6) for step in range(7)]


def test_steps_scale_with_the_pairs(data, tmp_path):
    """A handful of pairs gets a handful of steps, not `steps`: it cannot be fit to zero loss."""
    config = DPOConfig(model=TINY, data_dir=data, out_dir=tmp_path / "run", samples=6, portion=0.34, steps=500,
                       steps_per_pair=0.5, lr=1e-3, device="cpu", min_pairs=1, score_final=False, holdout=0.0)
    assert [config.optimiser_steps(n) for n in (0, 1, 5, 999, 1000, 5000)] == [0, 1, 3, 500, 500, 500]
    assert DPOConfig(model=TINY, data_dir=data, out_dir=tmp_path, pairs_per_step=2).optimiser_steps(9) == 9
    result = run_dpo(config, candidate_source=real_pieces)
    assert result.iterations[0].optimise.steps == 3 and result.iterations[0].pairs == 5


def test_held_out_pairs_are_not_learnt_from_and_stop_the_optimiser_when_their_loss_stays(data, tmp_path):
    """With a learning rate too small to move anything, the held-out pairs' loss stays at log 2: optimising
    stops after three checks instead of running its planned steps."""
    pairs = [(0, j) for j in range(10)]
    config = DPOConfig(model=TINY, data_dir=data, out_dir=tmp_path, seed=3)
    train, held = split_heldout(pairs, range(10), config, 1)
    assert len(held) == 2 and sorted(train + held) == pairs and not {j for _, j in train} & {j for _, j in held}
    assert split_heldout(pairs[:4], range(4), config, 1) == (pairs[:4], [])  # too few rejected pieces to hold any out
    off = DPOConfig(model=TINY, data_dir=data, out_dir=tmp_path, holdout=0.0)
    assert split_heldout(pairs, range(10), off, 1)[1] == []

    still = DPOConfig(model=TINY, data_dir=data, out_dir=tmp_path / "run", samples=6, portion=0.34, steps=40,
                      steps_per_pair=10, lr=1e-30, device="cpu", min_pairs=1, score_final=False, holdout=0.2)
    logs = []
    result = run_dpo(still, candidate_source=real_pieces, on_log=logs.append)
    o = result.iterations[0].optimise
    assert o.heldout_pairs == 1 and o.planned_steps == 40  # 4 training pairs x 10, one held out
    assert o.steps == 4 * 3 and o.heldout_loss_first == pytest.approx(0.693147, abs=1e-4)  # checks every 4 steps
    assert o.stopped_early == ("stopped learning at step 12 of 40: the loss of the 1 held-out pair had not fallen "
                               "for 3 checks (0.693 at best)")
    texts = [r["text"] for r in logs if "text" in r]
    assert ("iteration 1 of 1: learning from 5 pairs (1 chosen, 5 rejected pieces; the pairs of 1 held out), "
            "up to 40 steps") in texts
    assert "iteration 1 of 1: " + o.stopped_early in texts


def test_too_few_pairs_stop_the_run_and_keep_best_keeps_the_starting_model(data, tmp_path):
    """Iteration 1's model writes no piece that ends: the flag, the stop with its reason, keep-best."""
    config = DPOConfig(model=TINY, data_dir=data, out_dir=tmp_path / "run", iterations=3, samples=6, portion=0.34,
                       steps=4, lr=1e-3, device="cpu", min_pairs=2, keep_best=True)
    logs = []
    result = run_dpo(config, candidate_source=real_then_unfinished, on_log=logs.append)
    assert result.status == "stopped" and len(result.iterations) == 2
    first, second = result.iterations
    assert first.checkpoint and second.checkpoint is None and second.pairs == 0
    assert first.lowered_usable and first.usable_after == 0.0
    assert result.message.startswith(
        "iteration 2 of 3: no preference pairs, fewer than the minimum of 2 (minimum pairs): all 6 pieces reached "
        "the 300-patch limit without an ending; none ended, so none can be chosen; the model of iteration 1 is "
        "the result; iteration 1 lowered the usable share; kept the starting model")
    assert result.final_model == TINY  # keep-best: 3 of 6 usable beats 0 of 6
    texts = [r["text"] for r in logs if "text" in r]
    assert ("iteration 1 lowered the usable share: 50% of its starting model's pieces were usable, 0% of its own"
            in texts)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text(encoding="utf-8"))
    assert summary["status"] == "stopped" and summary["final_model"] == str(TINY)
    assert [m["usable"] for m in summary["models"]] == [3, 0]
    assert summary["iterations"][0]["lowered_usable"] is True


def test_generation_with_ratings_and_cancel(data, tmp_path):
    bach = parse_prompt("Baroque_Bach, Johann Sebastian_Choral")
    good = (PRE / "interleaved" / "bach_bwv66.6.abc").read_text(encoding="utf-8")
    bad = (PRE / "interleaved" / "haydn_opus74no1_movement3.abc").read_text(encoding="utf-8")
    ratings = [HumanRating(good, 1, bach, name="library-1"), HumanRating(bad, -1, bach, name="library-2")]
    config = DPOConfig(model=TINY, data_dir=data, out_dir=tmp_path / "run", samples=2, generation_batch=2,
                       max_patches=3, steps=3, lr=1e-3, device="cpu", min_pairs=1)
    progress = []
    result = run_dpo(config, ratings=ratings, on_progress=lambda d, t: progress.append((d, t)))
    it = result.iterations[0]
    assert it.generated == 2 and it.scored == 0 and it.optimise.margin_after > it.optimise.margin_before
    # the two unfinished pieces are rejected: with the piece rated down, three pairs with the one rated up
    assert (it.chosen, it.rejected, it.pairs) == (1, 3, 3)
    # the first stage counts patches as they are written: 2 pieces x 3, up to the batch's end
    writing = progress[:progress.index((6, 6)) + 1]
    assert writing[0] == (0, 6) and len(writing) > 2 and all(t == 6 for _, t in writing)
    assert [d for d, _ in writing] == sorted(d for d, _ in writing)
    samples = tmp_path / "run" / "iter_1" / "samples"
    assert len(list(samples.glob("*.raw.abc"))) == 2
    rows = list(csv.DictReader((tmp_path / "run" / "iter_1" / "scores.csv").open(encoding="utf-8")))
    assert [r["seed"] for r in rows[:2]] == ["2", "3"] and rows[0]["decision"] == "rejected"
    assert "3-patch limit" in rows[0]["reason"] and rows[0]["ended"] == "0"
    assert {r["name"] for r in rows} >= {"library-1", "library-2"}

    stopped = DPOConfig(model=TINY, data_dir=data, out_dir=tmp_path / "stopped", samples=0, steps=50, lr=1e-3,
                        device="cpu", scorer="none", min_pairs=1)
    steps = []
    result = run_dpo(stopped, ratings=ratings, on_log=lambda r: steps.append(r) if r["event"] == "step" else None,
                     should_stop=lambda: len(steps) >= 2)
    assert result.status == "cancelled" and len(steps) == 2
    assert not (tmp_path / "stopped" / "iter_1" / "model.pth").exists()
    assert json.loads((tmp_path / "stopped" / "summary.json").read_text(encoding="utf-8"))["status"] == "cancelled"


def test_pairwise_judgements_alone_are_exactly_the_pairs_learnt_from(data, tmp_path):
    """No scorer, only "A is better than B": no piece is written, the run's pairs are the judged ones, no more, no
    less (none held out), every optimiser step draws one of them, and the weights move."""
    bach = parse_prompt("Baroque_Bach, Johann Sebastian_Choral")
    a, b, c, d, e = ("X:1\n" + (PRE / "interleaved" / f"{name}.abc").read_text(encoding="utf-8") for name in PIECES
                     if name != "bach_bwv66.6")
    given = [("library-1", "library-2"), ("library-1", "library-3"), ("library-4", "library-5"),
             ("library-4", "library-6"), ("library-3", "library-6"), ("library-1", "library-7")]
    text = {"library-1": a, "library-2": b, "library-3": c, "library-4": d, "library-5": e, "library-6": b + "|",
            "library-7": c + "|"}
    pairs = [HumanPair(text[x], text[y], bach, x, y) for x, y in given]
    config = DPOConfig(model=TINY, data_dir=data, out_dir=tmp_path / "run", scorer="none", samples=8, steps=50,
                       steps_per_pair=3, holdout=0.2, lr=1e-3, device="cpu", min_pairs=len(given), score_final=False)
    steps = []
    result = run_dpo(config, ratings=pairs, on_log=lambda r: steps.append(r) if r["event"] == "step" else None)
    it = result.iterations[0]
    assert result.status == "finished" and it.generated == 0  # without a scorer no piece is written
    # five pieces judged worse would hold one out of a scorer's pieces; what the user judged is always learnt
    assert (it.chosen, it.rejected, it.pairs, it.optimise.heldout_pairs) == (3, 5, 6, 0)
    pref = json.loads((tmp_path / "run" / "iter_1" / "preference.json").read_text(encoding="utf-8"))
    assert sorted(map(tuple, pref["paired"])) == sorted(given)
    drawn = [tuple(p) for r in steps for p in r["drawn"]]
    assert len(steps) == it.optimise.steps == 18 and set(drawn) == set(given)
    assert it.optimise.margin_after > it.optimise.margin_before
    start, learnt = load_checkpoint(TINY).model.state_dict(), load_checkpoint(it.checkpoint).model.state_dict()
    w = "char_level_decoder.base.transformer.h.0.mlp.c_fc.weight"
    assert not torch.equal(start[w], learnt[w])
    rows = list(csv.DictReader((tmp_path / "run" / "iter_1" / "scores.csv").open(encoding="utf-8")))
    assert {r["name"] for r in rows} == set(text) and {r["source"] for r in rows} == {"human"}
    more = DPOConfig(model=TINY, data_dir=data, out_dir=tmp_path / "more", scorer="none", min_pairs=7, device="cpu")
    with pytest.raises(DPOError, match="only 6 preference pairs, fewer than the minimum of 7 .*: the user's "
                                       "judgements are 0 pieces rated up, 0 rated down and 6 pairwise judgements"):
        run_dpo(more, ratings=pairs)


def test_no_pairs_is_an_error_that_says_why(data, tmp_path):
    config = DPOConfig(model=TINY, data_dir=data, out_dir=tmp_path / "run", samples=2, max_patches=2, steps=1,
                       device="cpu")
    with pytest.raises(DPOError) as refused:
        run_dpo(config)
    assert str(refused.value).startswith(
        "iteration 1 of 1: no preference pairs, fewer than the minimum of 8 (minimum pairs): all 2 pieces reached "
        "the 2-patch limit without an ending; none ended, so none can be chosen; no model was made")
    assert json.loads((tmp_path / "run" / "summary.json").read_text(encoding="utf-8"))["status"] == "stopped"
    with pytest.raises(DPOError, match="clamp2-weights"):
        DPOConfig(model=TINY, data_dir=data, out_dir=tmp_path, scorer="clamp2")
    with pytest.raises(DPOError, match="keep best .* needs a scorer"):
        DPOConfig(model=TINY, data_dir=data, out_dir=tmp_path, scorer="none", keep_best=True)
