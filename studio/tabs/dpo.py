"""The DPO tab: CLaMP-DPO iterations on a model: dataset, model, scorer, iterations; progress, the mean score
per iteration, and the chosen and rejected pieces side by side to listen to. The library's ratings can join in.
"""
from __future__ import annotations

import gradio as gr
import pandas as pd

from pipelines.errors import JobError
from pipelines.service.backend import Backend, job_line
from studio.guard import bind
from studio.piece_view import preview_view

TITLE = "DPO"
SCORERS = {"builtin": "Built-in (music statistics vs the dataset)", "clamp2": "CLaMP 2 (weights in models/)",
           "none": "None: my ratings only"}
POLL_S = 1.0
ui: dict = {}


def render(backend: Backend) -> None:
    with gr.Row():
        ui["model"] = gr.Dropdown(label="Model", allow_custom_value=True)
        ui["dataset"] = gr.Dropdown(label="Dataset (prompts and reference pieces)", allow_custom_value=True)
        ui["refresh"] = gr.Button("Refresh", size="sm", scale=0)
    with gr.Row():
        ui["scorer"] = gr.Radio([(v, k) for k, v in SCORERS.items()], value="builtin", label="Scorer")
        ui["clamp2"] = gr.Dropdown(label="CLaMP 2 weights (a .pth in models/)", allow_custom_value=True)
        ui["use_ratings"] = gr.Checkbox(True, label="Use my thumbs up / down from the library")
    ui["run"] = gr.Textbox("my-dpo", label="Run name (a folder in the workspace's runs)")
    with gr.Row():
        ui["iterations"] = gr.Number(1, precision=0, minimum=1, label="Iterations")
        ui["samples"] = gr.Number(100, precision=0, minimum=0, label="Pieces generated per iteration")
        ui["steps"] = gr.Number(200, precision=0, minimum=1, label="Optimiser steps per iteration")
        ui["max_patches"] = gr.Number(0, precision=0, minimum=0, label="Max patches per piece (0: no limit)")
    ui["memory"] = gr.Markdown()
    with gr.Row():
        ui["start"] = gr.Button("Start", variant="primary")
        ui["cancel"] = gr.Button("Cancel", variant="stop")
    ui["status"] = gr.Markdown()
    ui["chart"] = gr.LinePlot(x="iteration", y="mean score", title="Mean score of each iteration's pieces",
                              height=260)
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
    ui["job"] = gr.BrowserState("", storage_key="notagen-dpo-job")


def listen(backend: Backend) -> None:
    inputs = [ui[k] for k in ("model", "dataset", "run", "scorer", "clamp2", "use_ratings", "iterations", "samples",
                              "steps", "max_patches")]
    outputs = [ui["job"], ui["status"], ui["chart"]]
    ui["start"].click(bind(start, backend), inputs, outputs, api_name="dpo_start", concurrency_limit=None,
                      show_progress="hidden")
    ui["cancel"].click(bind(cancel, backend), ui["job"], ui["status"], api_name="dpo_cancel")
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
    app.load(bind(watch, backend), ui["job"], [ui["job"], ui["status"], ui["chart"]], api_name=False,
             concurrency_limit=None, show_progress="hidden")


def choices(backend: Backend):
    models = [(m.label, m.ref) for m in backend.models()]
    datasets = [d.name for d in backend.datasets() if d.built]
    weights = [ref for _, ref in models if ref.startswith("models/")]
    return (gr.update(choices=models, value=models[0][1] if models else None),
            gr.update(choices=datasets, value=datasets[0] if datasets else None),
            gr.update(choices=weights, value=None))


def memory(backend: Backend, model):
    return f"VRAM for one DPO step: {backend.dpo_memory(model)}" if model else ""


def start(backend: Backend, model, dataset, run, scorer, clamp2, use_ratings, iterations, samples, steps,
          max_patches):
    params = {"model": model or "", "dataset": dataset or "", "run": run or "", "scorer": scorer,
              "clamp2": clamp2 or "" if scorer == "clamp2" else "", "use_ratings": bool(use_ratings),
              "iterations": int(iterations or 1), "samples": int(samples or 0), "steps": int(steps or 1),
              "max_patches": int(max_patches or 0)}
    job = backend.submit_dpo(params)
    yield from watch(backend, job.id)


def chart(summary: dict) -> pd.DataFrame:
    scores = summary.get("mean_scores") or []
    rows = [{"iteration": i, "mean score": s} for i, s in enumerate(scores, 1) if s is not None]
    return pd.DataFrame(rows or {"iteration": [], "mean score": []})


def watch(backend: Backend, job_id: str):
    if not job_id:
        yield "", "", chart({})
        return
    try:
        job = backend.job(job_id)
    except JobError:
        yield "", "", chart({})
        return
    run = job.params.get("run", "")
    while True:
        summary = backend.dpo_summary(run) if run in backend.runs() else {}
        status = job_line(job, backend.job_position(job_id))
        if job.is_finished:
            if job.state == "done":
                status = f"{job.result['status']}; the improved model is {job.result['final_model']} (listed in Generate)"
            yield job_id, status, chart(summary)
            return
        yield job_id, status, chart(summary)
        job = backend.wait(job_id, POLL_S)


def cancel(backend: Backend, job_id: str):
    return job_line(backend.cancel(job_id), -1) if job_id else "no DPO run to cancel"


def pairs(backend: Backend, run, iteration):
    found = backend.dpo_pairs(run or "", int(iteration or 1))
    return (gr.update(choices=found["chosen"], value=found["chosen"][0] if found["chosen"] else None),
            gr.update(choices=found["rejected"], value=found["rejected"][0] if found["rejected"] else None))


def listen_piece(backend: Backend, run, iteration, name):
    if not name:
        return "", None
    score, audio, _ = preview_view(backend, backend.preview_score(backend.dpo_piece(run or "", int(iteration or 1),
                                                                                     name)))
    return score, audio
