"""The Train tab: a dataset, a base model (or a size to train from scratch), settings with a VRAM estimate,
start / cancel / resume, and the live loss curve, log and ETA. A finished run appears in every model list.
"""
from __future__ import annotations

import gradio as gr
import pandas as pd

from pipelines.errors import JobError
from pipelines.service.backend import Backend, job_line
from studio.guard import bind

TITLE = "Train"
SCRATCH = "(train from scratch)"
PRESETS = ("demo", "tiny", "notagen-small", "notagen-medium", "notagen-large")
POLL_S = 1.0
ui: dict = {}


def render(backend: Backend) -> None:
    with gr.Row():
        ui["dataset"] = gr.Dropdown(label="Dataset", allow_custom_value=True)
        ui["base"] = gr.Dropdown(label="Base model", allow_custom_value=True)
        ui["preset"] = gr.Dropdown(list(PRESETS), value="demo", label="Size when training from scratch")
        ui["refresh"] = gr.Button("Refresh", size="sm", scale=0)
    ui["run"] = gr.Textbox(label="Run name (a folder in the workspace's runs)", value="my-run")
    with gr.Row():
        ui["epochs"] = gr.Number(3, precision=0, minimum=1, label="Epochs")
        ui["max_steps"] = gr.Number(0, precision=0, minimum=0, label="Max steps (0: no limit)")
        ui["lr"] = gr.Number(0, minimum=0, label="Learning rate (0: 1e-5 fine-tuning, 3e-4 from scratch)")
        ui["batch_size"] = gr.Number(1, precision=0, minimum=1, label="Batch size")
        ui["grad_accum"] = gr.Number(1, precision=0, minimum=1, label="Gradient accumulation")
    with gr.Row():
        ui["warmup_steps"] = gr.Number(100, precision=0, minimum=0, label="Warm-up steps")
        ui["lora_rank"] = gr.Number(0, precision=0, minimum=0, label="LoRA rank (0: full fine-tuning)")
        ui["patience"] = gr.Number(3, precision=0, minimum=0, label="Early-stop patience (epochs, 0: off)")
    ui["estimate"] = gr.Markdown()
    with gr.Row():
        ui["start"] = gr.Button("Start", variant="primary")
        ui["resume"] = gr.Button("Resume this run")
        ui["cancel"] = gr.Button("Cancel", variant="stop")
    ui["status"] = gr.Markdown()
    ui["curve"] = gr.LinePlot(x="step", y="loss", color="curve", title="Loss", height=300)
    ui["log"] = gr.Textbox(label="Log", lines=6, max_lines=12, interactive=False)
    ui["job"] = gr.BrowserState("", storage_key="notagen-train-job")


def settings_inputs() -> list:
    return [ui[k] for k in ("dataset", "base", "preset", "run", "epochs", "max_steps", "lr", "batch_size",
                            "grad_accum", "warmup_steps", "lora_rank", "patience")]


def listen(backend: Backend) -> None:
    outputs = [ui["job"], ui["status"], ui["curve"], ui["log"]]
    ui["start"].click(bind(start, backend), settings_inputs(), outputs, api_name="train_start",
                      concurrency_limit=None, show_progress="hidden")
    ui["resume"].click(bind(resume, backend), ui["run"], outputs, api_name="train_resume", concurrency_limit=None,
                       show_progress="hidden")
    ui["cancel"].click(bind(cancel, backend), ui["job"], ui["status"], api_name="train_cancel")
    ui["refresh"].click(bind(choices, backend), None, [ui["dataset"], ui["base"]], api_name="train_choices")
    for name in ("base", "preset", "batch_size", "lora_rank"):
        ui[name].change(bind(estimate, backend), [ui["base"], ui["preset"], ui["batch_size"], ui["lora_rank"]],
                        ui["estimate"], api_name=False, show_progress="hidden")


def listen_load(backend: Backend, app) -> None:
    app.load(bind(choices, backend), None, [ui["dataset"], ui["base"]], api_name=False)
    app.load(bind(watch, backend), ui["job"], [ui["job"], ui["status"], ui["curve"], ui["log"]], api_name=False,
             concurrency_limit=None, show_progress="hidden")


def choices(backend: Backend):
    datasets = [d.name for d in backend.datasets() if d.built]
    models = [(m.label, m.ref) for m in backend.models()] + [(SCRATCH, SCRATCH)]
    return (gr.update(choices=datasets, value=datasets[0] if datasets else None),
            gr.update(choices=models, value=models[0][1]))


def estimate(backend: Backend, base, preset, batch_size, lora_rank):
    base = "" if base in (None, SCRATCH) else base
    return "VRAM: " + backend.training_memory(base, preset or "demo", int(batch_size or 1), int(lora_rank or 0))


def start(backend: Backend, dataset, base, preset, run, epochs, max_steps, lr, batch_size, grad_accum,
          warmup_steps, lora_rank, patience):
    scratch = base in (None, "", SCRATCH)
    params = {"dataset": dataset or "", "run": run or "", "base": None if scratch else base,
              "preset": preset if scratch else None, "epochs": int(epochs or 1), "max_steps": int(max_steps or 0),
              "lr": float(lr) if lr else None, "batch_size": int(batch_size or 1), "grad_accum": int(grad_accum or 1),
              "warmup_steps": int(warmup_steps or 0), "lora_rank": int(lora_rank or 0), "patience": int(patience or 0)}
    job = backend.submit_training(params)
    yield from watch(backend, job.id)


def resume(backend: Backend, run):
    job = backend.submit_training(backend.resume_params(run or ""))
    yield from watch(backend, job.id)


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
    if not job_id:
        yield "", "", curve([]), ""
        return
    try:
        job = backend.job(job_id)
    except JobError:
        yield "", "", curve([]), ""
        return
    run = job.params.get("run", "")
    while True:
        records = backend.run_log(run) if run in backend.runs() else []
        status = job_line(job, backend.job_position(job_id))
        if job.is_finished:
            if job.state == "done":
                r = job.result
                status = (f"{r['status']} after {r['step']} steps; best eval loss {r['best_eval_loss']}; "
                          f"the model is {r['best'] or 'not saved'} (listed in Generate)")
            yield job_id, status, curve(records), log_text(records)
            return
        yield job_id, status, curve(records), log_text(records)
        job = backend.wait(job_id, POLL_S)


def cancel(backend: Backend, job_id: str):
    return job_line(backend.cancel(job_id), -1) if job_id else "no training to cancel"
