"""The DPO tab: CLaMP-DPO iterations on a model: dataset, model, scorer, iterations; how long they may take before
they start; progress; per model the share of its pieces that end, the share usable and the mean score (a point per
model), with the pairs each iteration learnt from and a flag where one lowered the usable share; and the chosen and
rejected pieces side by side to listen to. The library's judgements (thumbs up / down, "this one is better") can
join in; the box that lets them says how many there are.

The settings' defaults and ranges are DPOConfig's (through DPOSpec); on page load they are sized to this machine
(`backend.dpo.defaults()`: on a CPU a run of a minute or two).
"""
from __future__ import annotations

import html
import math

import gradio as gr
import pandas as pd

from pipelines.errors import DPOError, NotaGenError
from pipelines.fields import default_of, help_of
from pipelines.service import Backend, DPOSpec, Job
from studio.controls import number, radio
from studio.guard import bind
from studio.job_follow import JobFollow, job_line
from studio.piece_view import preview_view

TITLE = "DPO"
CLAMP2 = "clamp2"  # the scorer that needs CLaMP 2 weights
SCORERS = {"builtin": "Built-in (music statistics vs the dataset)", CLAMP2: "CLaMP 2 (weights in models/)",
           "none": "None: my judgements only"}
# The widgets that fill a DPOSpec, by its field names.
SPEC_FIELDS = ("model", "dataset", "run", "scorer", "clamp2", "use_ratings", "iterations", "samples", "steps",
               "max_patches", "generation_batch", "min_pairs", "score_final", "keep_best")
# The settings sized to the machine on page load (DPOService.defaults), and those the estimate reads.
SIZED_FIELDS = ("iterations", "samples", "steps", "max_patches", "generation_batch", "min_pairs", "score_final",
                "keep_best")
ESTIMATE_FIELDS = ("model", "scorer", *SIZED_FIELDS)
# The chart's measures, as the legend names them.
MEASURES = {"ended_share": "share of pieces that end", "usable_share": "share of pieces usable",
            "mean_score": "mean score"}
TABLE_COLUMNS = ["model", "pieces", "end", "usable", "mean score", "pairs", "note"]
ui: dict = {}
job = JobFollow("dpo", "DPO run", poll_s=1.0, elem_prefix="dpo")


def checkbox(spec, name: str, label: str) -> gr.Checkbox:
    return gr.Checkbox(default_of(spec, name), label=label, info=help_of(spec, name) or None)


def render(backend: Backend) -> None:
    """The run's settings in a side column (what to improve, how, how long; the rest folded), what each model's
    pieces are in the main one: the chart, the table, then an iteration's chosen and rejected pieces side by side."""
    spec = DPOSpec
    with gr.Row(equal_height=False, elem_id="dpo-layout"):
        with gr.Column(scale=1, min_width=360, elem_id="dpo-side"):
            gr.Markdown("#### What to improve")
            with gr.Group():
                with gr.Row(equal_height=True):
                    ui["model"] = gr.Dropdown(label="Model", allow_custom_value=True, scale=4)
                    ui["refresh"] = gr.Button("Refresh", size="sm", scale=1, min_width=70)
                ui["dataset"] = gr.Dropdown(label="Dataset (prompts and reference pieces)", allow_custom_value=True)
                ui["run"] = gr.Textbox("my-dpo", label="Run name (a folder in the workspace's runs)")
            gr.Markdown("#### How")
            with gr.Group():
                ui["scorer"] = radio(spec, "scorer", "Scorer", SCORERS)
                ui["clamp2"] = gr.Dropdown(label="CLaMP 2 weights (a .pth in models/)", allow_custom_value=True,
                                           visible=default_of(spec, "scorer") == CLAMP2)
                ui["use_ratings"] = gr.Checkbox(spec.__dataclass_fields__["use_ratings"].default,
                                                label="Use my judgements from the library (thumbs up / down, "
                                                      "\"this one is better\")", elem_id="dpo-use-ratings")
            gr.Markdown("#### How long")
            with gr.Group():
                with gr.Row():
                    ui["iterations"] = number(spec, "iterations", "Iterations")
                    ui["samples"] = number(spec, "samples", "Pieces generated per iteration")
                with gr.Row():
                    ui["steps"] = number(spec, "steps", "Optimiser steps per iteration (at most)")
                    ui["max_patches"] = number(spec, "max_patches", "Max patches per piece (0: no limit)")
            ui["estimate"] = gr.Markdown(elem_id="dpo-estimate", elem_classes="quiet-note")
            with gr.Accordion("More settings", open=False):
                ui["score_final"] = checkbox(spec, "score_final", "Measure the last model")
                ui["keep_best"] = checkbox(spec, "keep_best", "Keep the best model")
                with gr.Row():
                    ui["generation_batch"] = number(spec, "generation_batch", "Pieces generated at once")
                    ui["min_pairs"] = number(spec, "min_pairs", "Minimum pairs")
            with gr.Row():
                ui["start"] = gr.Button("Start", variant="primary", scale=3)
                job.render_cancel()
            job.render_status()
        with gr.Column(scale=2, min_width=480, elem_id="dpo-main"):
            # Points, not lines (a run of one iteration has one model before the final one), nor bars (the plot's
            # axis does not start at 0, so the lowest bar would have no height).
            ui["chart"] = gr.ScatterPlot(x="model", y="value", color="measure", title="What each model's pieces are",
                                         y_lim=[0, 1], height=280, elem_id="dpo-chart")
            ui["table"] = gr.Dataframe(headers=TABLE_COLUMNS, interactive=False, elem_id="dpo-table")
            with gr.Row(equal_height=True):
                ui["iteration"] = gr.Number(1, precision=0, minimum=1, label="Iteration", scale=1)
                ui["pairs"] = gr.Button("Show chosen and rejected", size="sm", scale=2)
            with gr.Row():
                with gr.Column(elem_classes="piece-card"):
                    ui["chosen"] = gr.Dropdown(label="Chosen", allow_custom_value=True)
                    ui["chosen_score"] = gr.HTML()
                    ui["chosen_audio"] = gr.Audio(type="filepath", interactive=False, label="Chosen")
                with gr.Column(elem_classes="piece-card"):
                    ui["rejected"] = gr.Dropdown(label="Rejected", allow_custom_value=True)
                    ui["rejected_score"] = gr.HTML()
                    ui["rejected_audio"] = gr.Audio(type="filepath", interactive=False, label="Rejected")


def listen(backend: Backend) -> None:
    ui["start"].click(bind(start, backend), inputs_kwargs={k: ui[k] for k in SPEC_FIELDS},
                      outputs=job.outputs(ui["chart"], ui["table"]), api_name="dpo_start", concurrency_limit=None,
                      show_progress="hidden")
    job.listen(backend)
    ui["scorer"].change(clamp2_box, ui["scorer"], ui["clamp2"], api_name=False, show_progress="hidden")
    ui["refresh"].click(bind(choices, backend), None, [ui["model"], ui["dataset"], ui["clamp2"], ui["use_ratings"]],
                        api_name="dpo_choices")
    for name in ESTIMATE_FIELDS:
        ui[name].change(bind(estimate, backend), inputs_kwargs={k: ui[k] for k in ESTIMATE_FIELDS},
                        outputs=ui["estimate"], api_name=False, show_progress="hidden", trigger_mode="always_last")
    ui["pairs"].click(bind(pairs, backend), [ui["run"], ui["iteration"]], [ui["chosen"], ui["rejected"]],
                      api_name="dpo_pairs")
    for side in ("chosen", "rejected"):
        ui[side].change(bind(listen_piece, backend), [ui["run"], ui["iteration"], ui[side]],
                        [ui[f"{side}_score"], ui[f"{side}_audio"]], api_name=f"dpo_{side}")


def listen_load(backend: Backend, app) -> None:
    app.load(bind(sized, backend), None, [ui[k] for k in SIZED_FIELDS], api_name=False)
    app.load(bind(choices, backend), None, [ui["model"], ui["dataset"], ui["clamp2"], ui["use_ratings"]],
             api_name=False)
    app.load(bind(watch, backend), job.job, job.outputs(ui["chart"], ui["table"]), api_name=False,
             concurrency_limit=None, show_progress="hidden")


def choices(backend: Backend):
    models = [(m.label, m.ref) for m in backend.models.list()]
    datasets = backend.datasets.built()
    weights = [ref for _, ref in models if ref.startswith("models/")]
    return (gr.update(choices=models, value=models[0][1] if models else None),
            gr.update(choices=datasets, value=datasets[0] if datasets else None),
            gr.update(choices=weights, value=None),
            gr.update(info=f"The library holds {backend.dpo.judgements_line()}."))


def sized(backend: Backend) -> tuple:
    """The sized settings' values for this machine, in SIZED_FIELDS order."""
    defaults = backend.dpo.defaults()
    return tuple(gr.update(value=defaults[name]) for name in SIZED_FIELDS)


def estimate(backend: Backend, model=None, **settings) -> str:
    """How long the run may take (and its VRAM on a GPU), before it starts; "" until a model is chosen. A setting
    out of range is said here, where the estimate would be."""
    if not model:
        return ""
    try:
        return backend.dpo.estimate(model, **settings)
    except NotaGenError as e:
        return f"No estimate: {e}"


def start(backend: Backend, **settings):
    """`settings`: the DPOSpec fields, by name."""
    yield from watch(backend, backend.dpo.submit(DPOSpec(**settings)).id)


def clamp2_box(scorer: str):
    """The CLaMP 2 weights box is there for the CLaMP 2 scorer only."""
    return gr.update(visible=scorer == CLAMP2)


def chart(models: list) -> pd.DataFrame:
    """The chart's points: for each measured model (DPOService.report's `models`, in run order), its share of
    pieces that end, its share usable and its mean score. A figure not known has no point. The columns' types
    are fixed, even with no rows (the plot reads them from the first frame it gets)."""
    points = [(m.label, MEASURES[key], float(getattr(m, key))) for m in models for key in MEASURES
              if isinstance(getattr(m, key), (int, float)) and math.isfinite(getattr(m, key))]
    return pd.DataFrame({"model": pd.Series([p[0] for p in points], dtype="str"),
                         "measure": pd.Series([p[1] for p in points], dtype="str"),
                         "value": pd.Series([p[2] for p in points], dtype="float64")})


def chart_plot(models: list) -> dict:
    """The chart's update, its models in run order (the plot would sort the names: "after iteration 10" before 2)."""
    points = chart(models)
    return gr.update(value=points, sort=list(dict.fromkeys(points["model"])),
                     colors_in_legend=list(dict.fromkeys(points["measure"])))


def table(models: list) -> pd.DataFrame:
    """One row per measured model: its figures, the pairs of the iteration that made it, the flag."""
    def share(value: float | None) -> str:
        return "-" if value is None else f"{value:.0%}"

    rows = [[m.label, m.pieces or "-", share(m.ended_share), share(m.usable_share),
             "-" if m.mean_score is None else f"{m.mean_score:.3f}", "" if m.pairs is None else str(m.pairs),
             "lowered the usable share" if m.lowered_usable else ("not measured" if not m.pieces else "")]
            for m in models]
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def watch(backend: Backend, job_id: str):
    def running(current: Job, first: bool) -> tuple:
        run = backend.dpo.run_of(current)
        models = backend.dpo.report(run).models if run in backend.training.runs() else []
        return chart_plot(models), table(models)

    def finished(done: Job) -> tuple:
        status = job_line(done, -1)
        if done.state == "done":
            r = backend.dpo.result(done)
            said = {"finished": "finished", "stopped": "stopped early"}.get(r.status, r.status)
            status = f"{said}; the model is {r.final_model} (listed in Generate)"
            if r.message:
                status += f". {r.message[0].upper()}{r.message[1:]}"
        return status, *running(done, False)

    yield from job.follow(backend, job_id, (chart_plot([]), table([])), running, finished)


def pairs(backend: Backend, run, iteration):
    found = backend.dpo.pairs(run or "", int(iteration or 1))

    def named(names: list[str]) -> dict:
        labelled = [(f"{n}: {found.reasons[n]}" if found.reasons.get(n) else n, n) for n in names]
        return gr.update(choices=labelled, value=names[0] if names else None)

    return named(found.chosen), named(found.rejected)


def listen_piece(backend: Backend, run, iteration, name):
    if not name:
        return "", None
    try:
        abc = backend.dpo.piece(run or "", int(iteration or 1), name)
    except DPOError as e:  # a piece that did not end: said where the score would be
        return f"<p>{html.escape(str(e))}</p>", None
    score, audio, _ = preview_view(backend, backend.generation.preview_score(abc))
    return score, audio
