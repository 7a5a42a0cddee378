"""The Train tab: a dataset, a base model (or a size to train from scratch), settings with a VRAM estimate,
start / cancel / resume, and the live loss curve, log and ETA. A finished run appears in every model list.

The settings' defaults and ranges are TrainConfig's (through TrainingSpec); a resumed run
goes on with the settings saved in its folder, whatever started it.
"""
from __future__ import annotations

import math

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
    ui["curve"] = gr.LinePlot(x="step", y="loss", color="curve", title="Loss", height=300, elem_id="train-curve")
    ui["log"] = gr.Textbox(label="Log", lines=6, max_lines=12, interactive=False)


def listen(backend: Backend) -> None:
    job.fill(ui["run"], backend.training.run_of)  # "Resume this run" resumes the run the tab shows
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


# How a run ended, in words (TrainingResult.status).
ENDINGS = {"finished": "finished", "early_stopped": "stopped early (the eval loss stopped improving)",
           "max_steps": "stopped at the step limit", "cancelled": "cancelled"}


def curve(records: list[dict]) -> pd.DataFrame:
    """The loss chart's rows: one per step record (curve "train") and per evaluation (curve "eval").

    The columns' types are fixed, even with no rows: the plot reads its axis and colour types from
    the first frame it gets, and an empty frame of another type never draws (gradio 6.31).
    Losses that are not finite numbers (a diverged step, an epoch without eval pieces) are left out.
    """
    rows = [(r["step"], r["loss"], "train") for r in records if r.get("event") == "step"]
    rows += [(r["step"], r["eval_loss"], "eval") for r in records if r.get("event") == "eval"]
    rows = [(int(step), float(loss), name) for step, loss, name in rows
            if isinstance(loss, (int, float)) and math.isfinite(loss)]
    return pd.DataFrame({"step": pd.Series([r[0] for r in rows], dtype="int64"),
                         "loss": pd.Series([r[1] for r in rows], dtype="float64"),
                         "curve": pd.Series([r[2] for r in rows], dtype="str")})


def curve_plot(records: list[dict]) -> dict:
    """The loss chart's update: the rows, and the curves they hold as the legend.

    The plot keeps its colour scale until a setting such as the legend changes, so the legend
    names the curves present (the eval curve appears after the first epoch).
    """
    rows = curve(records)
    return gr.update(value=rows, colors_in_legend=list(dict.fromkeys(rows["curve"])))


def loss_text(loss: float | None) -> str:
    return "none" if loss is None else f"{loss:.3f}"


def outcome_line(status: str, step: int, best_eval_loss: float | None) -> str:
    """How a run ended: "stopped at the step limit after 300 steps; best eval loss 0.908"."""
    return f"{ENDINGS.get(status, status)} after {step} steps; best eval loss {loss_text(best_eval_loss)}"


def record_line(r: dict) -> str | None:
    """A log record as a line a musician reads; None for the records the chart shows (steps)."""
    event = r.get("event")
    if event == "eval":
        if r.get("eval_loss") is None:
            return f"epoch {r.get('epoch')} done (no pieces to evaluate on)"
        best = " (best so far)" if r.get("best") else ""
        return f"epoch {r.get('epoch')}: eval loss {loss_text(r['eval_loss'])}{best}"
    if event in ("start", "resume"):
        verb = "started" if event == "start" else f"resumed at step {r.get('step', 0)}"
        pieces = f"{r.get('train_pieces', '?')} pieces to learn from, {r.get('eval_pieces', '?')} to evaluate on"
        return (f"{verb} on {r.get('device', '?')}: {pieces}; {r.get('total_steps', '?')} steps "
                f"({r.get('steps_per_epoch', '?')} per epoch)")
    if event == "end":
        return outcome_line(r.get("status", ""), r.get("step", 0), r.get("best_eval_loss"))
    return None


def log_text(records: list[dict]) -> str:
    lines = [line for line in map(record_line, records[-200:]) if line]
    return "\n".join(lines[-20:])


def watch(backend: Backend, job_id: str):
    def records(current: Job) -> list[dict]:
        run = backend.training.run_of(current)
        return backend.training.log(run) if run in backend.training.runs() else []

    def running(current: Job, first: bool) -> tuple:
        found = records(current)
        return curve_plot(found), log_text(found)

    def finished(done: Job) -> tuple:
        status = job_line(done, -1)
        if done.state == "done":
            r = backend.training.result(done)
            saved = f"the model is {r.best} (listed in Generate)" if r.best else "no model was saved"
            status = f"{outcome_line(r.status, r.step, r.best_eval_loss)}; {saved}"
        return status, *running(done, False)

    yield from job.follow(backend, job_id, (curve_plot([]), ""), running, finished)
