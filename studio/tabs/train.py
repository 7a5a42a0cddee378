"""The Train tab: a dataset, a base model (or a size to train from scratch), settings with a time and memory
estimate, start / cancel / resume, and the live loss curve, log and ETA. A finished run appears in every model list.

The settings are a side column, grouped: what to train (dataset, base model or size, run name),
how long (epochs, max steps, with the time the run will take), and the rest in an "Advanced"
accordion; the status, chart and log have the main column. Start and Resume are quiet until
the run name can do that (the training service says what state a run is in). On a CPU the step
limit is proposed when the page opens, so that a run ends in a few minutes.

The settings' defaults and ranges are TrainConfig's (through TrainingSpec); a resumed run
goes on with the settings saved in its folder, whatever started it.
"""
from __future__ import annotations

import math

import gradio as gr
import pandas as pd

from pipelines.errors import NotaGenError
from pipelines.service import DEMO, ENDINGS, PRESET_NAMES, Backend, Job, TrainingService, TrainingSpec
from pipelines.service.training import duration
from studio.controls import number
from studio.guard import bind
from studio.job_follow import JobFollow, job_line

TITLE = "Train"
SCRATCH = "(train from scratch)"
# The widgets that fill a TrainingSpec, by its field names.
SPEC_FIELDS = ("dataset", "base", "preset", "run", "epochs", "max_steps", "lr", "batch_size", "grad_accum",
               "warmup_steps", "lora_rank", "patience")
# The widgets the time and memory estimate reads.
PLAN_FIELDS = ("dataset", "base", "preset", "epochs", "max_steps", "batch_size", "grad_accum", "lora_rank")
ui: dict = {}
job = JobFollow("train", "training", poll_s=1.0, elem_prefix="train")


def render(backend: Backend) -> None:
    spec = TrainingSpec
    with gr.Row():
        with gr.Column(scale=2, min_width=380):
            gr.Markdown("#### What to train")
            ui["dataset"] = gr.Dropdown(label="Dataset", allow_custom_value=True, elem_id="train-dataset")
            ui["base"] = gr.Dropdown(label="Base model", allow_custom_value=True, elem_id="train-base")
            ui["preset"] = gr.Dropdown(list(PRESET_NAMES), value=DEMO, label="Size when training from scratch",
                                       visible=False)
            ui["run"] = gr.Textbox(label="Run name (a folder in the workspace's runs)", value="my-run",
                                   elem_id="train-run")
            ui["refresh"] = gr.Button("Refresh the datasets and models", size="sm")
            gr.Markdown("#### How long")
            with gr.Row():
                ui["epochs"] = number(spec, "epochs", "Epochs")
                ui["max_steps"] = number(spec, "max_steps", "Max steps (0: no limit)")
            ui["estimate"] = gr.Markdown(elem_id="train-estimate")
            with gr.Accordion("Advanced: learning rate, batch, warm-up, LoRA, early stop", open=False):
                with gr.Row():
                    ui["lr"] = number(spec, "lr", "Learning rate (0: 1e-5 fine-tuning, 3e-4 from scratch)",
                                      whole=False)
                    ui["batch_size"] = number(spec, "batch_size", "Batch size")
                with gr.Row():
                    ui["grad_accum"] = number(spec, "grad_accum", "Gradient accumulation")
                    ui["warmup_steps"] = number(spec, "warmup_steps", "Warm-up steps")
                with gr.Row():
                    ui["lora_rank"] = number(spec, "lora_rank", "LoRA rank (0: full fine-tuning)")
                    ui["patience"] = number(spec, "patience", "Early-stop patience (epochs, 0: off)")
            ui["run_note"] = gr.Markdown(elem_id="train-run-note")
            with gr.Row():
                ui["start"] = gr.Button("Start", variant="primary", elem_id="train-start", min_width=100)
                ui["resume"] = gr.Button("Resume", interactive=False, elem_id="train-resume", min_width=100)
                job.render_cancel()
        with gr.Column(scale=3):
            job.render_status()
            ui["curve"] = gr.LinePlot(x="step", y="loss", color="curve", title="Loss", height=320,
                                      elem_id="train-curve")
            ui["log"] = gr.Textbox(label="Log", lines=8, max_lines=14, interactive=False)


def listen(backend: Backend) -> None:
    job.fill(ui["run"], backend.training.run_of)  # "Resume this run" resumes the run the tab shows
    outputs = job.outputs(ui["curve"], ui["log"])
    ui["start"].click(bind(start, backend), inputs_kwargs={k: ui[k] for k in SPEC_FIELDS}, outputs=outputs,
                      api_name="train_start", concurrency_limit=None, show_progress="hidden")
    ui["resume"].click(bind(resume, backend), inputs_kwargs={"run": ui["run"]}, outputs=outputs,
                       api_name="train_resume", concurrency_limit=None, show_progress="hidden")
    job.listen(backend)
    # The estimate follows what the musician changes (`input`), and comes after what the studio fills in (the
    # lists, the CPU's step limit) in the same chain, so an older estimate never lands after a newer one.
    estimated = {"fn": bind(estimate, backend), "inputs_kwargs": {k: ui[k] for k in PLAN_FIELDS},
                 "outputs": ui["estimate"], "api_name": False, "show_progress": "hidden"}
    ui["refresh"].click(bind(choices, backend), None, [ui["dataset"], ui["base"]], api_name="train_choices").then(
        **estimated)
    ui["base"].change(scratch_size, ui["base"], ui["preset"], api_name=False, show_progress="hidden")
    for name in PLAN_FIELDS:
        ui[name].input(**estimated, trigger_mode="always_last")
    # the run name, and every change of the job's status line, say whether Start and Resume can act
    buttons = {"fn": bind(run_buttons, backend), "inputs": ui["run"],
               "outputs": [ui["start"], ui["resume"], ui["run_note"]], "api_name": False, "show_progress": "hidden"}
    ui["run"].change(**buttons)
    job.status.change(**buttons)


def listen_load(backend: Backend, app) -> None:
    fitted = {k: ui[k] for k in (*PLAN_FIELDS, "warmup_steps") if k != "max_steps"}
    app.load(bind(choices, backend), None, [ui["dataset"], ui["base"]], api_name=False).then(
        bind(fit_to_machine, backend), inputs_kwargs=fitted, outputs=[ui["max_steps"], ui["warmup_steps"]],
        api_name=False, show_progress="hidden").then(
        bind(estimate, backend), inputs_kwargs={k: ui[k] for k in PLAN_FIELDS}, outputs=ui["estimate"],
        api_name=False, show_progress="hidden")
    app.load(bind(run_buttons, backend), ui["run"], [ui["start"], ui["resume"], ui["run_note"]], api_name=False)
    app.load(bind(watch, backend), job.job, job.outputs(ui["curve"], ui["log"]), api_name=False,
             concurrency_limit=None, show_progress="hidden")


def choices(backend: Backend):
    datasets = backend.datasets.built()
    models = [(m.label, m.ref) for m in backend.models.list()] + [(SCRATCH, SCRATCH)]
    return (gr.update(choices=datasets, value=datasets[0] if datasets else None),
            gr.update(choices=models, value=models[0][1]))


def scratch_size(base):
    """The size box is for training from scratch only."""
    return gr.update(visible=base == SCRATCH)


def plan(backend: Backend, dataset, base, preset, epochs, max_steps, batch_size, grad_accum, lora_rank):
    base = "" if base in (None, SCRATCH) else base
    return backend.training.plan(dataset or "", base, (preset or DEMO) if not base else "", int(epochs or 1),
                                 int(max_steps or 0), int(batch_size or 1), int(grad_accum or 1), int(lora_rank or 0))


def fit_to_machine(backend: Backend, warmup_steps=0, **settings):
    """(max steps, warm-up steps) sized to this machine: on a CPU a run is kept to a few minutes."""
    try:
        full = plan(backend, max_steps=0, **settings)
    except NotaGenError:  # no dataset yet: the estimate says so
        return gr.skip(), gr.skip()
    max_steps, warmup = TrainingService.fit_to_machine(full, int(warmup_steps or 0))
    return (max_steps, warmup) if max_steps else (gr.skip(), gr.skip())


def estimate(backend: Backend, **settings) -> str:
    """How long the run will take and how much memory a step needs, in words."""
    if not settings.get("dataset"):
        return "Choose a dataset (build one in the Dataset tab) to see how long the run takes."
    try:
        planned = plan(backend, **settings)
        full = planned if not settings.get("max_steps") else plan(backend, **{**settings, "max_steps": 0})
        base = "" if settings["base"] in (None, SCRATCH) else settings["base"]
        batch_size, lora_rank = max(1, int(settings["batch_size"] or 1)), int(settings["lora_rank"] or 0)
        memory = backend.training.memory(base, settings["preset"] or DEMO, batch_size, lora_rank)
    except NotaGenError as e:
        return f"No estimate: {e}"
    lines = [f"**Time:** {planned.describe()}."]
    fitted, _ = TrainingService.fit_to_machine(full, 0)
    if fitted and planned.steps > fitted:
        lines.append(f"On this CPU, Max steps {fitted} ends the run in {duration(fitted * full.seconds_per_step)}.")
    elif fitted:
        lines.append(f"Max steps keeps the run short on this CPU (all {full.steps} steps would take "
                     f"{duration(full.seconds)}).")
    how = f"LoRA rank {lora_rank}" if lora_rank else "full fine-tuning"
    what = "Memory" if planned.device == "cpu" else "VRAM"
    lines.append(f"**{what}:** {memory} ({how}, batch {batch_size}, full-length pieces); a rough estimate, the "
                 "first steps show the real use.")
    return "\n\n".join(lines)


def run_buttons(backend: Backend, run):
    """Start for a new run name, Resume for a run that stopped before its end; each quiet otherwise, with why."""
    state = backend.training.run_state(run or "")
    return gr.update(interactive=state.can_start), gr.update(interactive=state.can_resume), state.note


def start(backend: Backend, base=None, preset=None, **settings):
    """`settings`: the TrainingSpec fields, by name; `base` is a model or the from-scratch choice."""
    scratch = base in (None, "", SCRATCH)
    spec = TrainingSpec(base="" if scratch else base, preset=preset if scratch else "", **settings)
    yield from watch(backend, backend.training.submit(spec).id)


def resume(backend: Backend, run):
    yield from watch(backend, backend.training.resume(run or "").id)


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
