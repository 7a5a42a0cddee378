"""The system strip above the tabs: device, VRAM used / free, dtype, loaded model, the GPU job; unload; the job list.

The strip looks every CHECK_S whether a job started, ended or was cancelled (the queue's
`version`) and then refreshes at once; otherwise it refreshes every REFRESH_S (VRAM, progress).
"""
from __future__ import annotations

import time

import gradio as gr

from pipelines.service import Backend
from studio.guard import bind
from studio.job_follow import job_line

CHECK_S = 1.0
REFRESH_S = 5.0
ui: dict = {}


def render(backend: Backend) -> None:
    with gr.Row(equal_height=True):
        ui["status"] = gr.Markdown(elem_id="system-status")
        ui["unload"] = gr.Button("Unload model", size="sm", scale=0, min_width=140)
    with gr.Accordion("Jobs", open=False):
        ui["jobs"] = gr.Dataframe(headers=["job", "what", "state", "started", "status"], type="array",
                                  interactive=False, elem_id="system-jobs")
        with gr.Row():
            ui["pick"] = gr.Dropdown(label="Job", allow_custom_value=True, scale=3)
            ui["cancel"] = gr.Button("Cancel job", variant="secondary", scale=1, elem_classes="cancel-button")
    ui["timer"] = gr.Timer(CHECK_S)
    ui["seen"] = gr.State((-1, 0.0))  # the queue's version and the time of the strip's last refresh


def listen(backend: Backend) -> None:
    outputs = [ui["status"], ui["jobs"], ui["pick"]]
    ui["timer"].tick(bind(check, backend), ui["seen"], [*outputs, ui["seen"]], show_progress="hidden",
                     api_name="system_refresh", concurrency_limit=None)
    ui["unload"].click(bind(unload, backend), None, outputs, api_name="system_unload")
    ui["cancel"].click(bind(cancel, backend), ui["pick"], outputs, api_name="system_cancel")


def listen_load(backend: Backend, app) -> None:
    app.load(bind(refresh, backend), None, [ui["status"], ui["jobs"], ui["pick"]], api_name=False,
             show_progress="hidden")


def check(backend: Backend, seen: tuple[int, float]):
    """A timer tick: the strip refreshed when a job started, ended or was cancelled since `seen`, or
    REFRESH_S after its last refresh; else nothing is sent."""
    version, now = backend.jobs.version, time.monotonic()
    last_version, last_time = seen if isinstance(seen, (list, tuple)) and len(seen) == 2 else (-1, 0.0)
    if version == last_version and now - last_time < REFRESH_S:
        return gr.skip(), gr.skip(), gr.skip(), gr.skip()
    return (*refresh(backend), (version, now))


def status_line(backend: Backend) -> str:
    """The strip's line; on a machine without a GPU it names the CPU and shows no VRAM or GPU queue."""
    s = backend.models.system()
    job = f"running: {s.running}" + (f" ({s.waiting} waiting)" if s.waiting else "") if s.running else "idle"
    if s.device == "cpu":
        return f"**CPU** (no GPU in use) | dtype {s.dtype} | model: {s.loaded_model or 'none loaded'} | {job}"
    vram = (f" | VRAM {s.vram_used_gib:.1f} GiB used / {s.vram_free_gib:.1f} GiB free of {s.vram_total_gib:.1f}"
            if s.vram_total_gib is not None else "")
    return f"**{s.gpu}** ({s.device}){vram} | dtype {s.dtype} | model: {s.loaded_model or 'none loaded'} | {job}"


def refresh(backend: Backend):
    jobs = backend.jobs.list(30)
    rows = [[j.id, j.title, j.state, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(j.created)),
             job_line(j, backend.jobs.position(j.id))] for j in jobs]
    active = [j.id for j in jobs if not j.is_finished]
    return status_line(backend), rows, gr.update(choices=active, value=active[0] if active else None)


def unload(backend: Backend):
    backend.models.unload()
    return refresh(backend)


def cancel(backend: Backend, job_id: str | None):
    if job_id:
        backend.jobs.cancel(job_id)
    return refresh(backend)
