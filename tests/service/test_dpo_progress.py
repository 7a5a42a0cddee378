"""The DPO job's status line in words: what the run is doing at each of its log records."""
from pathlib import Path

from pipelines.dpo.config import DPOConfig
from pipelines.service.dpo import progress_line


def config(**changes) -> DPOConfig:
    return DPOConfig(model=Path("m.pth"), data_dir=Path("d"), out_dir=Path("r"), **changes)


def test_each_stage_of_an_iteration_reads_in_words():
    c = config(iterations=2, samples=4, steps=8, scorer="builtin")
    assert progress_line({"event": "generate", "iteration": 1, "samples": 4}, c) == (
        "iteration 1 of 2: writing 4 pieces")
    assert progress_line({"event": "scored", "iteration": 1, "mean_score": 0.61234, "ok": 3, "generated": 4}, c) == (
        "iteration 1: 3 of 4 pieces usable, mean score 0.612")
    assert progress_line({"event": "step", "iteration": 1, "step": 3, "steps": 8}, c) == (
        "iteration 1: learning from the pairs, step 3 of 8")
    assert progress_line({"event": "iteration", "iteration": 1}, c) == "iteration 1 done"
    assert progress_line({"event": "final", "mean_score": 0.7}, c) == "the final model's pieces are scored"
    assert progress_line({"event": "start", "iterations": 2}, c) is None


def test_after_the_last_iteration_it_says_the_final_model_is_being_scored():
    scored = config(iterations=2, scorer="builtin")
    assert progress_line({"event": "iteration", "iteration": 2}, scored) == (
        "iteration 2 done; the final model is writing pieces to be scored")
    unscored = config(iterations=2, scorer="none")
    assert progress_line({"event": "iteration", "iteration": 2}, unscored) == "iteration 2 done"
    scorer_without_score = config(iterations=1, scorer="none")
    assert progress_line({"event": "scored", "iteration": 1, "mean_score": None, "ok": 2, "generated": 4},
                         scorer_without_score) == "iteration 1: 2 of 4 pieces usable"
