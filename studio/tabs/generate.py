"""The Generate tab: choose a model and a prompt, generate, watch the ABC arrive, then read, listen, download, rate.

Generation runs as a job on the GPU lane: a second request waits and shows its place in
line. The job id is kept in the browser (BrowserState), so after a refresh the tab
finds the job again and shows its progress or its pieces.
"""
from __future__ import annotations

import functools

import gradio as gr

from pipelines.abc.prompts import composers, instrumentations, periods
from pipelines.errors import JobError, NotaGenError
from pipelines.generation.options import DEFAULT_BAR_RETRIES
from pipelines.service.backend import Backend, GenerationSpec, job_line
from studio.guard import bind, guarded
from studio.piece_view import entry_view, preview_view

TITLE = "Generate"
MAX_PIECES = 8
POLL_S = 0.3
LIVE_CHARS = 4000  # of each piece, while it streams
NO_MODEL = ("**No model is installed yet.** The built-in demo model is not in this installation. "
            "Train one in the Train tab, or copy a NotaGen checkpoint (.pth) into the workspace's `models` folder "
            "and press refresh.")

ui: dict = {}


def render(backend: Backend) -> None:
    with gr.Row():
        ui["model"] = gr.Dropdown(label="Model", allow_custom_value=True, scale=4, elem_id="gen-model")
        ui["refresh"] = gr.Button("Refresh models", scale=1, size="sm")
    ui["model_note"] = gr.Markdown(elem_id="gen-model-note")
    with gr.Row():
        ui["period"] = gr.Dropdown(label="Period", allow_custom_value=True, elem_id="gen-period")
        ui["composer"] = gr.Dropdown(label="Composer", allow_custom_value=True, elem_id="gen-composer")
        ui["instrumentation"] = gr.Dropdown(label="Instrumentation", allow_custom_value=True,
                                            elem_id="gen-instrumentation")
    with gr.Row():
        ui["count"] = gr.Slider(1, MAX_PIECES, value=1, step=1, label="Pieces")
        ui["seed"] = gr.Number(0, precision=0, minimum=0, label="Seed (piece i uses seed + i)")
    with gr.Accordion("Sampling and limits", open=False):
        with gr.Row():
            ui["top_k"] = gr.Slider(0, 50, value=9, step=1, label="Top-k (0: off)")
            ui["top_p"] = gr.Slider(0.05, 1.0, value=0.9, step=0.05, label="Top-p")
            ui["temperature"] = gr.Slider(0.1, 2.5, value=1.2, step=0.05, label="Temperature")
        with gr.Row():
            ui["max_patches"] = gr.Number(0, precision=0, minimum=0, label="Max patches per piece (0: no limit)",
                                          elem_id="gen-max-patches")
            ui["max_seconds"] = gr.Number(600, minimum=1, maximum=3600, label="Time limit (s)")
            ui["bar_retries"] = gr.Number(DEFAULT_BAR_RETRIES, precision=0, minimum=0, maximum=100,
                                          label="Redraws of a bar whose voices don't line up (0: off)")
    with gr.Accordion("Continue a score", open=False, elem_id="gen-continue"):
        ui["upload"] = gr.File(label="Score to continue (.abc, .musicxml, .xml, .mxl)",
                               file_types=[".abc", ".musicxml", ".xml", ".mxl"], elem_id="gen-upload")
        with gr.Row():
            ui["keep_lines"] = gr.Number(0, precision=0, minimum=0, label="Keep its first N lines (0: all)")
            ui["add_lines"] = gr.Number(8, precision=0, minimum=1, label="Lines to add")
        ui["preview_score"] = gr.HTML(elem_id="gen-preview-score")
        ui["preview_audio"] = gr.Audio(label="Listen to the uploaded score", type="filepath", interactive=False,
                                       elem_id="gen-preview-audio")
    with gr.Row():
        ui["generate"] = gr.Button("Generate", variant="primary", elem_id="gen-button")
        ui["cancel"] = gr.Button("Cancel", variant="stop", elem_id="gen-cancel")
    ui["status"] = gr.Markdown(elem_id="gen-status")
    ui["live"] = gr.Textbox(label="ABC, as it is written", lines=10, max_lines=20, interactive=False,
                            elem_id="gen-live")
    ui["ids"] = gr.State([])
    ui["job"] = gr.BrowserState("", storage_key="notagen-generate-job")
    ui["slots"] = []
    for i in range(MAX_PIECES):
        with gr.Group(visible=False, elem_id=f"gen-piece-{i}") as group:
            heading = gr.Markdown()
            score = gr.HTML(elem_id=f"gen-score-{i}")
            audio = gr.Audio(type="filepath", interactive=False, label="Listen", elem_id=f"gen-audio-{i}")
            files = gr.File(label="Downloads: ABC, MusicXML, MIDI, WAV, PDF", file_count="multiple",
                            interactive=False)
            with gr.Row():
                up = gr.Button("Thumbs up", size="sm", elem_id=f"gen-up-{i}")
                down = gr.Button("Thumbs down", size="sm", elem_id=f"gen-down-{i}")
                rated = gr.Markdown()
        ui["slots"].append({"group": group, "heading": heading, "score": score, "audio": audio, "files": files,
                            "up": up, "down": down, "rated": rated})


def slot_outputs() -> list:
    return [c for s in ui["slots"] for c in (s["group"], s["heading"], s["score"], s["audio"], s["files"],
                                              s["rated"])]


def watch_outputs() -> list:
    return [ui["job"], ui["status"], ui["live"], ui["ids"], *slot_outputs()]


def replay_outputs() -> list:
    """The controls the Library's "replay" fills."""
    return [ui[k] for k in ("model", "period", "composer", "instrumentation", "count", "seed", "top_k", "top_p",
                            "temperature", "max_patches", "max_seconds", "bar_retries")]


def listen(backend: Backend) -> None:
    model_outputs = [ui["model"], ui["model_note"], ui["period"], ui["composer"], ui["instrumentation"]]
    ui["refresh"].click(bind(list_models, backend), ui["model"], model_outputs, api_name="generate_models")
    ui["model"].input(bind(choose_model, backend), ui["model"], model_outputs[1:], api_name="generate_model")
    ui["period"].input(bind(choose_period, backend), [ui["model"], ui["period"]],
                       [ui["composer"], ui["instrumentation"]], api_name="generate_period")
    ui["composer"].input(bind(choose_composer, backend), [ui["model"], ui["period"], ui["composer"]],
                         ui["instrumentation"], api_name="generate_composer")
    ui["upload"].upload(bind(preview_upload, backend), ui["upload"], [ui["preview_score"], ui["preview_audio"]],
                        api_name="generate_preview")
    inputs = [ui[k] for k in ("model", "period", "composer", "instrumentation", "count", "seed", "top_k", "top_p",
                              "temperature", "max_patches", "max_seconds", "upload", "keep_lines", "add_lines",
                              "bar_retries")]
    # Many visitors may wait at once: the job queue, not Gradio's, decides who runs.
    ui["generate"].click(bind(generate, backend), inputs, watch_outputs(), api_name="generate",
                         concurrency_limit=None, show_progress="hidden")
    ui["cancel"].click(bind(cancel, backend), ui["job"], ui["status"], api_name="generate_cancel",
                       concurrency_limit=None)
    for i, slot in enumerate(ui["slots"]):
        for button, rating in ((slot["up"], 1), (slot["down"], -1)):
            button.click(functools.partial(guarded(rate), backend, slot=i, rating=rating), ui["ids"], slot["rated"],
                         api_name=f"generate_rate_{i}_{'up' if rating > 0 else 'down'}")


def listen_load(backend: Backend, app) -> None:
    app.load(bind(list_models, backend), None,
             [ui["model"], ui["model_note"], ui["period"], ui["composer"], ui["instrumentation"]], api_name=False)
    app.load(bind(watch, backend), ui["job"], watch_outputs(), api_name="generate_reattach",
             concurrency_limit=None, show_progress="hidden")


# ------------------------------------------------------------------ handlers

def list_models(backend: Backend, current: str | None = None):
    choices = [(m.label, m.ref) for m in backend.models()]
    if not choices:
        return (gr.update(choices=[], value=None), NO_MODEL, gr.update(choices=[], value=None),
                gr.update(choices=[], value=None), gr.update(choices=[], value=None))
    refs = [ref for _, ref in choices]
    model = current if current in refs else refs[0]
    return (gr.update(choices=choices, value=model), *choose_model(backend, model))


def choose_model(backend: Backend, model: str):
    prompts, note = backend.model_prompts(model)
    first = periods(prompts)
    period = first[0] if first else None
    names = composers(prompts, period) if period else []
    composer = names[0] if names else None
    kinds = instrumentations(prompts, period, composer) if composer else []
    return (note and f"*{note}*", gr.update(choices=first, value=period), gr.update(choices=names, value=composer),
            gr.update(choices=kinds, value=kinds[0] if kinds else None))


def choose_period(backend: Backend, model: str, period: str):
    prompts, _ = backend.model_prompts(model)
    names = composers(prompts, period)
    composer = names[0] if names else None
    kinds = instrumentations(prompts, period, composer) if composer else []
    return gr.update(choices=names, value=composer), gr.update(choices=kinds, value=kinds[0] if kinds else None)


def choose_composer(backend: Backend, model: str, period: str, composer: str):
    prompts, _ = backend.model_prompts(model)
    kinds = instrumentations(prompts, period, composer)
    return gr.update(choices=kinds, value=kinds[0] if kinds else None)


def preview_upload(backend: Backend, upload: str | None):
    if not upload:
        return "", None
    score, audio, _ = preview_view(backend, backend.preview_score(backend.read_score(upload)))
    return score, audio


def generate(backend: Backend, model, period, composer, instrumentation, count, seed, top_k, top_p, temperature,
             max_patches, max_seconds, upload, keep_lines, add_lines, bar_retries=DEFAULT_BAR_RETRIES):
    spec = GenerationSpec(
        model=model or "", period=period or "", composer=composer or "", instrumentation=instrumentation or "",
        count=int(count or 1), seed=int(seed or 0), top_k=int(top_k), top_p=float(top_p),
        temperature=float(temperature), max_patches=int(max_patches or 0), max_seconds=float(max_seconds or 600),
        continue_abc=backend.read_score(upload) if upload else "", keep_lines=int(keep_lines or 0),
        add_lines=int(add_lines or 8), bar_retries=int(DEFAULT_BAR_RETRIES if bar_retries is None else bar_retries))
    job = backend.submit_generation(spec)
    yield from watch(backend, job.id)


def watch(backend: Backend, job_id: str):
    """Follow a generation job: its place in line, the ABC as it streams, then each piece."""
    hidden = [gr.update(visible=False), "", "", None, None, ""] * MAX_PIECES
    if not job_id:
        yield "", "", "", [], *hidden
        return
    try:
        job = backend.job(job_id)
    except JobError:
        yield "", "", "", [], *hidden
        return
    if job.kind != "generate":
        raise NotaGenError(f"job {job_id} is not a generation")
    first = True
    while not job.is_finished:
        live = backend.job_live(job_id).get("texts", {})
        text = "\n\n".join(f"--- piece {row + 1} ---\n{t[-LIVE_CHARS:]}" for row, t in sorted(live.items()))
        yield (job_id, job_line(job, backend.job_position(job_id)), text, [],
               *(hidden if first else [gr.skip()] * len(hidden)))
        first = False
        job = backend.wait(job_id, POLL_S)
    yield job_id, *finished(backend, job)


def finished(backend: Backend, job) -> tuple:
    pieces = job.result.get("pieces", [])
    status = job_line(job, -1)
    if job.state == "done":
        ok = sum(1 for p in pieces if p["status"] == "ok")
        status = f"finished: {ok} of {len(pieces)} piece(s) complete"
        if job.result.get("warning"):
            status += f"  \n*{job.result['warning']}*"
    entries = [backend.piece(p["id"]) for p in pieces[:MAX_PIECES]]
    text = "\n\n".join(f"--- piece {n} ({e.status}) ---\n{e.abc or e.raw}" for n, e in enumerate(entries, 1))
    slots = []
    for i in range(MAX_PIECES):
        if i < len(entries):
            slots += [gr.update(visible=True), *entry_view(backend, entries[i])]
        else:
            slots += [gr.update(visible=False), "", "", None, None, ""]
    return (status, text, [e.id for e in entries], *slots)


def cancel(backend: Backend, job_id: str):
    if not job_id:
        return "no generation to cancel"
    return job_line(backend.cancel(job_id), -1)


def rate(backend: Backend, ids: list, slot: int = 0, rating: int = 0):
    if not isinstance(ids, list) or not 0 <= slot < len(ids):
        raise NotaGenError("there is no piece in that place to rate")
    entry = backend.rate(int(ids[slot]), int(rating))
    return {1: "rated: thumbs up", -1: "rated: thumbs down"}.get(entry.rating, "")
