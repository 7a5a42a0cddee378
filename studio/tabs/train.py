"""The Train tab: a dataset, a base model (or a size to train from scratch), settings with a VRAM estimate,
start / cancel / resume, and the live loss curve, log and ETA. A finished run appears in every model list.

The settings' defaults and ranges are TrainConfig's (through TrainingSpec); a resumed run
goes on with the settings saved in its folder, whatever started it.
"""
from __future__ import annotations

import gradio as gr
import pandas as pd

from pipelines.service import DEMO, PRESET_NAMES, Backend, Job, TrainingSpec
from studio.controls import number
from studio.guard import bind
from studio.job_follow import JobFollow, job_line

TITLE = "Train"
SCRATCH = "(train from scratch)"
# The widgets that fill a TrainingSpec, by its field names.
SPEC_FIELDS = ("dataset", "base", "preset", "run", "epochs", "max_steps", "lr", "batch_size", "grad_accum",
               "warmup_steps", "lora_rank", "patience")
ui: dict = {}
job = JobFollow("train", "training", poll_s=1.0, elem_prefix="train")


def render(backend: Backend) -> None:
    spec = TrainingSpec
    with gr.Row():
        ui["dataset"] = gr.Dropdown(label="Dataset", allow_custom_value=True)
        ui["base"] = gr.Dropdown(label="Base model", allow_custom_value=True)
        ui["preset"] = gr.Dropdown(list(PRESET_NAMES), value=DEMO, label="Size when training from scratch")
        ui["refresh"] = gr.Button("Refresh", size="sm", scale=0)
    ui["run"] = gr.Textbox(label="Run name (a folder in the workspace's runs)", value="my-run")
    with gr.Row():
        ui["epochs"] = number(spec, "epochs", "Epochs")
        ui["max_steps"] = number(spec, "max_steps", "Max steps (0: no limit)")
        ui["lr"] = number(spec, "lr", "Learning rate (0: 1e-5 fine-tuning, 3e-4 from scratch)", whole=False)
        ui["batch_size"] = number(spec, "batch_size", "Batch size")
        ui["grad_accum"] = number(spec, "grad_accum", "Gradient accumulation")
    with gr.Row():
        ui["warmup_steps"] = number(spec, "warmup_steps", "Warm-up steps")
        ui["lora_rank"] = number(spec, "lora_rank", "LoRA rank (0: full fine-tuning)")
        ui["patience"] = number(spec, "patience", "Early-stop patience (epochs, 0: off)")
    ui["estimate"] = gr.Markdown()
    with gr.Row():
        ui["start"] = gr.Button("Start", variant="primary")
        ui["resume"] = gr.Button("Resume this run")
        job.render_cancel()
    job.render_status()
    ui["curve"] = gr.LinePlot(x="step", y="loss", color="curve", title="Loss", height=300)
    ui["log"] = gr.Textbox(label="Log", lines=6, max_lines=12, interactive=False)


def listen(backend: Backend) -> None:
    outputs = job.outputs(ui["curve"], ui["log"])
    ui["start"].click(bind(start, backend), inputs_kwargs={k: ui[k] for k in SPEC_FIELDS}, outputs=outputs,
                      api_name="train_start", concurrency_limit=None, show_progress="hidden")
    ui["resume"].click(bind(resume, backend), inputs_kwargs={"run": ui["run"]}, outputs=outputs,
                       api_name="train_resume", concurrency_limit=None, show_progress="hidden")
    job.listen(backend)
    ui["refresh"].click(bind(choices, backend), None, [ui["dataset"], ui["base"]], api_name="train_choices")
    sizing = {k: ui[k] for k in ("base", "preset", "batch_size", "lora_rank")}
    for name in sizing:
        ui[name].change(bind(estimate, backend), inputs_kwargs=sizing, outputs=ui["estimate"], api_name=False,
                        show_progress="hidden")


def listen_load(backend: Backend, app) -> None:
    app.load(bind(choices, backend), None, [ui["dataset"], ui["base"]], api_name=False)
    app.load(bind(watch, backend), job.job, job.outputs(ui["curve"], ui["log"]), api_name=False,
             concurrency_limit=None, show_progress="hidden")


def choices(backend: Backend):
    datasets = backend.datasets.built()
    models = [(m.label, m.ref) for m in backend.models.list()] + [(SCRATCH, SCRATCH)]
    return (gr.update(choices=datasets, value=datasets[0] if datasets else None),
            gr.update(choices=models, value=models[0][1]))


def estimate(backend: Backend, base, preset, batch_size, lora_rank):
    base = "" if base in (None, SCRATCH) else base
    batch_size, lora_rank = max(1, int(batch_size or 1)), int(lora_rank or 0)
    described = backend.training.memory(base, preset or DEMO, batch_size, lora_rank)
    how = f"LoRA rank {lora_rank}" if lora_rank else "full fine-tuning"
    return (f"VRAM: {described} ({how}, batch {batch_size}, full-length pieces); a rough estimate, "
            "the first steps show the real use")


def start(backend: Backend, base=None, preset=None, **settings):
    """`settings`: the TrainingSpec fields, by name; `base` is a model or the from-scratch choice."""
    scratch = base in (None, "", SCRATCH)
    spec = TrainingSpec(base="" if scratch else base, preset=preset if scratch else "", **settings)
    yield from watch(backend, backend.training.submit(spec).id)


def resume(backend: Backend, run):
    yield from watch(backend, backend.training.resume(run or "").id)


def curve(records: list[dict]) -> pd.DataFrame:
    rows = [{"step": r["step"], "loss": r["loss"], "curve": "train"} for r in records if r.get("event") == "step"]
    rows += [{"step": r["step"], "loss": r["eval_loss"], "curve": "eval"}
             for r in records if r.get("event") == "eval" and r.get("eval_loss") is not None]
    return pd.DataFrame(rows or {"step": [], "loss": [], "curve": []})


def log_text(records: list[dict]) -> str:
    lines = []
    for r in records[-200:]:
        if r.get("event") == "eval":
            loss = "n/a" if r.get("eval_loss") is None else f"{r['eval_loss']:.4f}"
            lines.append(f"epoch {r['epoch']}: eval loss {loss}{' (best)' if r.get('best') else ''}")
        elif r.get("event") in ("start", "resume", "end"):
            lines.append(" ".join(f"{k}={v}" for k, v in r.items() if k != "time"))
    return "\n".join(lines[-20:])


def watch(backend: Backend, job_id: str):
    def records(current: Job) -> list[dict]:
        run = backend.training.run_of(current)
        return backend.training.log(run) if run in backend.training.runs() else []

    def running(current: Job, first: bool) -> tuple:
        found = records(current)
        return curve(found), log_text(found)

    def finished(done: Job) -> tuple:
        status = job_line(done, -1)
        if done.state == "done":
            r = backend.training.result(done)
            status = (f"{r.status} after {r.step} steps; best eval loss {r.best_eval_loss}; "
                      f"the model is {r.best or 'not saved'} (listed in Generate)")
        return status, *running(done, False)

    yield from job.follow(backend, job_id, (curve([]), ""), running, finished)
