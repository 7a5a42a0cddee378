"""The Train and DPO tabs' charts and wording: the rows a plot gets (typed columns, finite numbers, one row per
record), the types gradio's plot reads from them, and the lines a musician reads about a run.

The loss chart once drew nothing: its first (empty) frame had float columns, so the plot took the
curve names for numbers and never drew a line. These tests hold the frames to the types that draw.
"""
import json
import math

import gradio as gr
import pandas as pd

from pipelines.service import Job
from pipelines.service.dpo import ModelFigures
from pipelines.training.runlog import read_train_log
from studio.job_follow import job_line
from studio.tabs import dpo, train

START = {"event": "start", "step": 0, "epoch": 0, "total_steps": 300, "steps_per_epoch": 100, "device": "cpu",
         "processes": 1, "precision": "fp32", "trainable_parameters": 8_000_000, "train_pieces": 95, "eval_pieces": 5}


def step(n: int, loss: float) -> dict:
    return {"event": "step", "epoch": 1, "step": n, "total_steps": 300, "loss": loss, "lr": 1e-5, "grad_norm": 1.0,
            "skipped": False, "chars_per_s": 900.0, "eta_s": 10.0}


def run_log(tmp_path, records: list[dict]) -> list[dict]:
    """The records as the studio reads them: written to a train_log.jsonl and read back."""
    path = tmp_path / "train_log.jsonl"
    path.write_text("".join(json.dumps({"time": 1.0, **r}) + "\n" for r in records), encoding="utf-8")
    return read_train_log(path)


def plot_types(plot, frame: pd.DataFrame) -> dict:
    """The column types gradio's plot sends the browser for a frame."""
    return plot.postprocess(frame).datatypes


def test_the_loss_rows_are_one_per_step_and_eval_record_with_finite_numbers(tmp_path):
    records = run_log(tmp_path, [START, step(1, 3.5), step(2, 3.25), step(3, 3.0),
                                 {"event": "eval", "epoch": 1, "step": 3, "eval_loss": 3.1, "train_loss": 3.2,
                                  "best": True},
                                 step(4, 2.75),
                                 {"event": "end", "status": "max_steps", "step": 4, "epoch": 1,
                                  "best_eval_loss": 3.1}])
    rows = train.curve(records)
    assert list(rows.columns) == ["step", "loss", "curve"]
    assert rows.to_dict("records") == [
        {"step": 1, "loss": 3.5, "curve": "train"}, {"step": 2, "loss": 3.25, "curve": "train"},
        {"step": 3, "loss": 3.0, "curve": "train"}, {"step": 4, "loss": 2.75, "curve": "train"},
        {"step": 3, "loss": 3.1, "curve": "eval"}]
    assert str(rows["step"].dtype) == "int64" and str(rows["loss"].dtype) == "float64"
    assert pd.api.types.is_string_dtype(rows["curve"].dtype)
    assert all(math.isfinite(x) for x in rows["loss"])


def test_losses_that_are_not_numbers_are_left_out():
    records = [step(1, 3.0), step(2, float("nan")), step(3, float("inf")), step(4, 2.0),
               {"event": "eval", "epoch": 1, "step": 4, "eval_loss": None, "train_loss": 2.5, "best": False}]
    rows = train.curve(records)
    assert rows["step"].tolist() == [1, 4] and rows["curve"].tolist() == ["train", "train"]


def test_the_loss_plot_reads_numbers_on_its_axes_and_names_as_curves_even_before_the_first_step():
    plot = gr.LinePlot(x="step", y="loss", color="curve")
    expected = {"step": "quantitative", "loss": "quantitative", "curve": "nominal"}
    assert plot_types(plot, train.curve([])) == expected  # the frame the plot is first built from
    assert plot_types(plot, train.curve([step(1, 3.0)])) == expected
    assert len(train.curve([])) == 0


def test_the_loss_legend_names_the_curves_present_so_the_plot_redraws_when_eval_appears():
    assert train.curve_plot([])["colors_in_legend"] == []
    assert train.curve_plot([step(1, 3.0)])["colors_in_legend"] == ["train"]
    evaluated = [step(1, 3.0), {"event": "eval", "epoch": 1, "step": 1, "eval_loss": 2.9, "best": True}]
    update = train.curve_plot(evaluated)
    assert update["colors_in_legend"] == ["train", "eval"] and len(update["value"]) == 2


def test_a_run_ending_reads_in_words():
    assert train.outcome_line("max_steps", 300, 0.9081855511326153) == (
        "stopped at the step limit after 300 steps; best eval loss 0.908")
    assert train.outcome_line("early_stopped", 120, 1.5) == (
        "stopped early (the eval loss stopped improving) after 120 steps; best eval loss 1.500")
    assert train.outcome_line("finished", 10, None) == "finished after 10 steps; best eval loss none"


def test_the_log_shows_lines_not_records():
    records = [START, step(1, 3.0),
               {"event": "eval", "epoch": 1, "step": 100, "eval_loss": 0.9081855511326153, "best": True},
               {"event": "eval", "epoch": 2, "step": 200, "eval_loss": None, "best": False},
               {"event": "resume", **{k: v for k, v in START.items() if k != "event"}, "step": 200},
               {"event": "end", "status": "max_steps", "step": 300, "epoch": 3, "best_eval_loss": 0.9081855511326153}]
    assert train.log_text(records).split("\n") == [
        "started on cpu: 95 pieces to learn from, 5 to evaluate on; 300 steps (100 per epoch)",
        "epoch 1: eval loss 0.908 (best so far)",
        "epoch 2 done (no pieces to evaluate on)",
        "resumed at step 200 on cpu: 95 pieces to learn from, 5 to evaluate on; 300 steps (100 per epoch)",
        "stopped at the step limit after 300 steps; best eval loss 0.908"]
    assert "event=" not in train.log_text(records)


def test_a_cancelled_job_says_cancelled_once():
    cancelled = Job(id="j", kind="train", lane="gpu", params={}, state="cancelled", error="cancelled by the user")
    assert job_line(cancelled, -1) == "cancelled"
    failed = Job(id="j", kind="train", lane="gpu", params={}, state="failed", error="out of memory")
    assert job_line(failed, -1) == "failed: out of memory"


def figures(label: str, ended: float, usable: float, score: float | None, pairs: int | None = None,
            lowered: bool = False) -> ModelFigures:
    return ModelFigures(label, 200, ended, usable, score, pairs, lowered)


def test_the_dpo_chart_has_a_point_per_model_and_measure_in_run_order():
    models = [figures("starting model", 0.34, 0.30, 0.905)] + [
        figures(f"after iteration {k}", 0.5, 0.25, 0.9 + k / 100, pairs=60) for k in range(1, 11)]
    models[-1] = figures("after iteration 10", 0.5, 0.25, None, pairs=60)  # no piece ended: no mean score
    points = dpo.chart(models)
    assert len(points) == 11 * 3 - 1
    assert points[points["model"] == "starting model"].to_dict("records") == [
        {"model": "starting model", "measure": "share of pieces that end", "value": 0.34},
        {"model": "starting model", "measure": "share of pieces usable", "value": 0.30},
        {"model": "starting model", "measure": "mean score", "value": 0.905}]
    update = dpo.chart_plot(models)
    assert update["sort"][:3] == ["starting model", "after iteration 1", "after iteration 2"]  # not the alphabet's
    assert update["sort"][-1] == "after iteration 10"
    one = dpo.chart(models[:1])  # one model measured so far: its three points
    plot = gr.ScatterPlot(x="model", y="value", color="measure")
    expected = {"model": "nominal", "measure": "nominal", "value": "quantitative"}
    assert plot_types(plot, dpo.chart([])) == expected and plot_types(plot, one) == expected


def test_the_dpo_table_names_the_pairs_and_the_flag():
    rows = dpo.table([figures("starting model", 0.34, 0.3, 0.905),
                      figures("after iteration 1", 0.12, 0.1, 0.938, pairs=6, lowered=True)])
    assert rows.to_dict("records") == [
        {"model": "starting model", "pieces": 200, "end": "34%", "usable": "30%", "mean score": "0.905",
         "pairs": "", "note": ""},
        {"model": "after iteration 1", "pieces": 200, "end": "12%", "usable": "10%", "mean score": "0.938",
         "pairs": "6", "note": "lowered the usable share"}]
    assert list(dpo.table([]).columns) == dpo.TABLE_COLUMNS
    unmeasured = ModelFigures("after iteration 1", 0, None, None, None, 6, False)
    assert dpo.table([unmeasured]).to_dict("records")[0] == {
        "model": "after iteration 1", "pieces": "-", "end": "-", "usable": "-", "mean score": "-", "pairs": "6",
        "note": "not measured"}
    assert dpo.chart([unmeasured]).empty  # no point for what was not measured


def test_the_clamp2_weights_box_is_there_for_the_clamp2_scorer_only():
    assert dpo.clamp2_box("clamp2")["visible"] is True
    assert dpo.clamp2_box("builtin")["visible"] is False and dpo.clamp2_box("none")["visible"] is False
