"""The DPO tab: CLaMP-DPO iterations on a model: dataset, model, scorer, iterations; progress, the mean score
per iteration, and the chosen and rejected pieces side by side to listen to. The library's ratings can join in.

The settings' defaults and ranges are DPOConfig's (through DPOSpec).
"""
from __future__ import annotations

import math

import gradio as gr
import pandas as pd

from pipelines.fields import default_of
from pipelines.service import Backend, DPOSpec, Job
from studio.controls import number, radio
from studio.guard import bind
from studio.job_follow import JobFollow, job_line
from studio.piece_view import preview_view

TITLE = "DPO"
CLAMP2 = "clamp2"  # the scorer that needs CLaMP 2 weights
SCORERS = {"builtin": "Built-in (music statistics vs the dataset)", CLAMP2: "CLaMP 2 (weights in models/)",
           "none": "None: my ratings only"}
# The widgets that fill a DPOSpec, by its field names.
SPEC_FIELDS = ("model", "dataset", "run", "scorer", "clamp2", "use_ratings", "iterations", "samples", "steps",
               "max_patches")
ui: dict = {}
job = JobFollow("dpo", "DPO run", poll_s=1.0, elem_prefix="dpo")


def render(backend: Backend) -> None:
    spec = DPOSpec
    with gr.Row():
        ui["model"] = gr.Dropdown(label="Model", allow_custom_value=True)
        ui["dataset"] = gr.Dropdown(label="Dataset (prompts and reference pieces)", allow_custom_value=True)
        ui["refresh"] = gr.Button("Refresh", size="sm", scale=0)
    with gr.Row():
        ui["scorer"] = radio(spec, "scorer", "Scorer", SCORERS)
        ui["clamp2"] = gr.Dropdown(label="CLaMP 2 weights (a .pth in models/)", allow_custom_value=True,
                                   visible=default_of(spec, "scorer") == CLAMP2)
        ui["use_ratings"] = gr.Checkbox(spec.__dataclass_fields__["use_ratings"].default,
                                        label="Use my thumbs up / down from the library")
    ui["run"] = gr.Textbox("my-dpo", label="Run name (a folder in the workspace's runs)")
    with gr.Row():
        ui["iterations"] = number(spec, "iterations", "Iterations")
        ui["samples"] = number(spec, "samples", "Pieces generated per iteration")
        ui["steps"] = number(spec, "steps", "Optimiser steps per iteration")
        ui["max_patches"] = number(spec, "max_patches", "Max patches per piece (0: no limit)")
    ui["memory"] = gr.Markdown()
    with gr.Row():
        ui["start"] = gr.Button("Start", variant="primary")
        job.render_cancel()
    job.render_status()
    # Points, not a line (a run of one iteration has one score before the final model's), nor bars (the
    # plot's axis does not start at 0, so the lowest bar would have no height).
    ui["chart"] = gr.ScatterPlot(x="pieces", y="mean score", title="Mean score of the pieces each model wrote",
                                 height=260, elem_id="dpo-chart")
    with gr.Row():
        ui["iteration"] = gr.Number(1, precision=0, minimum=1, label="Iteration")
        ui["pairs"] = gr.Button("Show chosen and rejected")
    with gr.Row():
        with gr.Column():
            ui["chosen"] = gr.Dropdown(label="Chosen", allow_custom_value=True)
            ui["chosen_score"] = gr.HTML()
            ui["chosen_audio"] = gr.Audio(type="filepath", interactive=False, label="Chosen")
        with gr.Column():
            ui["rejected"] = gr.Dropdown(label="Rejected", allow_custom_value=True)
            ui["rejected_score"] = gr.HTML()
            ui["rejected_audio"] = gr.Audio(type="filepath", interactive=False, label="Rejected")


def listen(backend: Backend) -> None:
    ui["start"].click(bind(start, backend), inputs_kwargs={k: ui[k] for k in SPEC_FIELDS},
                      outputs=job.outputs(ui["chart"]), api_name="dpo_start", concurrency_limit=None,
                      show_progress="hidden")
    job.listen(backend)
    ui["scorer"].change(clamp2_box, ui["scorer"], ui["clamp2"], api_name=False, show_progress="hidden")
    ui["refresh"].click(bind(choices, backend), None, [ui["model"], ui["dataset"], ui["clamp2"]],
                        api_name="dpo_choices")
    ui["model"].change(bind(memory, backend), ui["model"], ui["memory"], api_name=False, show_progress="hidden")
    ui["pairs"].click(bind(pairs, backend), [ui["run"], ui["iteration"]], [ui["chosen"], ui["rejected"]],
                      api_name="dpo_pairs")
    for side in ("chosen", "rejected"):
        ui[side].change(bind(listen_piece, backend), [ui["run"], ui["iteration"], ui[side]],
                        [ui[f"{side}_score"], ui[f"{side}_audio"]], api_name=f"dpo_{side}")


def listen_load(backend: Backend, app) -> None:
    app.load(bind(choices, backend), None, [ui["model"], ui["dataset"], ui["clamp2"]], api_name=False)
    app.load(bind(watch, backend), job.job, job.outputs(ui["chart"]), api_name=False,
             concurrency_limit=None, show_progress="hidden")


def choices(backend: Backend):
    models = [(m.label, m.ref) for m in backend.models.list()]
    datasets = backend.datasets.built()
    weights = [ref for _, ref in models if ref.startswith("models/")]
    return (gr.update(choices=models, value=models[0][1] if models else None),
            gr.update(choices=datasets, value=datasets[0] if datasets else None),
            gr.update(choices=weights, value=None))


def memory(backend: Backend, model):
    return f"VRAM for one DPO step: {backend.dpo.memory(model)}" if model else ""


def start(backend: Backend, **settings):
    """`settings`: the DPOSpec fields, by name."""
    yield from watch(backend, backend.dpo.submit(DPOSpec(**settings)).id)


def clamp2_box(scorer: str):
    """The CLaMP 2 weights box is there for the CLaMP 2 scorer only."""
    return gr.update(visible=scorer == CLAMP2)


def chart(scores: list[float | None]) -> pd.DataFrame:
    """The chart's points: one per scored model, "iteration 1", "iteration 2", ..., then "final model".

    `scores`: each iteration's mean score, then the final model's (DPOService.mean_scores); a
    score not known yet (None) has no point. The columns' types are fixed, even with no rows (the
    plot reads them from the first frame it gets).
    """
    labels = [f"iteration {i}" for i in range(1, len(scores))] + ["final model"] if scores else []
    points = [(label, float(score)) for label, score in zip(labels, scores)
              if isinstance(score, (int, float)) and math.isfinite(score)]
    return pd.DataFrame({"pieces": pd.Series([p[0] for p in points], dtype="str"),
                         "mean score": pd.Series([p[1] for p in points], dtype="float64")})


def chart_plot(scores: list[float | None]) -> dict:
    """The chart's update, its points in run order (the plot would sort the names: "iteration 10" before 2)."""
    points = chart(scores)
    return gr.update(value=points, sort=list(points["pieces"]))


def watch(backend: Backend, job_id: str):
    def running(current: Job, first: bool) -> tuple:
        run = backend.dpo.run_of(current)
        return (chart_plot(backend.dpo.mean_scores(run) if run in backend.training.runs() else []),)

    def finished(done: Job) -> tuple:
        status = job_line(done, -1)
        if done.state == "done":
            r = backend.dpo.result(done)
            status = f"{r.status}; the improved model is {r.final_model} (listed in Generate)"
        return status, *running(done, False)

    yield from job.follow(backend, job_id, (chart_plot([]),), running, finished)


def pairs(backend: Backend, run, iteration):
    found = backend.dpo.pairs(run or "", int(iteration or 1))
    return (gr.update(choices=found.chosen, value=found.chosen[0] if found.chosen else None),
            gr.update(choices=found.rejected, value=found.rejected[0] if found.rejected else None))


def listen_piece(backend: Backend, run, iteration, name):
    if not name:
        return "", None
    abc = backend.dpo.piece(run or "", int(iteration or 1), name)
    score, audio, _ = preview_view(backend, backend.generation.preview_score(abc))
    return score, audio
