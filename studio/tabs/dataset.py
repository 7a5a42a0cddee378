"""The Dataset tab: scores in (upload, a folder in the workspace's imports, or the built-in corpus), training data out.

The build runs as a job with a progress line; each file's result (converted, unchanged,
failed with its stage and reason) is listed, and so is every dataset with its piece and
prompt counts.
"""
from __future__ import annotations

import gradio as gr

from pipelines.errors import JobError
from pipelines.service.backend import SCORE_UPLOADS, Backend, job_line
from studio.guard import bind

TITLE = "Dataset"
SOURCES = {"upload": "Upload score files", "folder": "A folder in the workspace's imports",
           "corpus": "Built-in corpus (music21: Bach chorales, string quartets, ...)"}
POLL_S = 0.5
ui: dict = {}


def render(backend: Backend) -> None:
    ui["source"] = gr.Radio([(v, k) for k, v in SOURCES.items()], value="corpus", label="Scores from")
    with gr.Group():
        ui["upload"] = gr.File(label="Score files", file_count="multiple", file_types=list(SCORE_UPLOADS))
        with gr.Row():
            ui["folder"] = gr.Dropdown(label="Import folder (inside the workspace's imports)", allow_custom_value=True,
                                       scale=3)
            ui["refresh_folders"] = gr.Button("Refresh", size="sm", scale=1)
        ui["limit"] = gr.Number(40, precision=0, minimum=1, label="Corpus pieces (first N; chorales come first)")
    ui["name"] = gr.Textbox(label="Dataset name", value="corpus", elem_id="dataset-name")
    with gr.Accordion("Labels for every piece (empty: suggested from each score) and options", open=False):
        with gr.Row():
            ui["period"] = gr.Textbox(label="Period")
            ui["composer"] = gr.Textbox(label="Composer (Last, First)")
            ui["instrumentation"] = gr.Textbox(label="Instrumentation")
        ui["eval_split"] = gr.Slider(0.0, 0.5, value=0.1, step=0.05, label="Share held out for evaluation")
        ui["max_unaligned"] = gr.Slider(
            0.0, 1.0, value=1.0, step=0.01, label="Leave out pieces whose voices misalign in more than this share "
            "of their bars (1: keep all)", elem_id="dataset-max-unaligned")
    with gr.Row():
        ui["build"] = gr.Button("Build dataset", variant="primary")
        ui["cancel"] = gr.Button("Cancel", variant="stop")
    ui["status"] = gr.Markdown(elem_id="dataset-status")
    ui["files"] = gr.Dataframe(headers=["file", "piece", "status", "stage", "reason"], type="array",
                               interactive=False, label="Files")
    with gr.Row():
        ui["datasets"] = gr.Dataframe(headers=["dataset", "pieces", "prompts", "train", "eval", "with warnings"],
                                      type="array", interactive=False, label="Datasets", scale=4)
        ui["refresh"] = gr.Button("Refresh", size="sm", scale=0)
    ui["job"] = gr.BrowserState("", storage_key="notagen-dataset-job")


def listen(backend: Backend) -> None:
    inputs = [ui[k] for k in ("source", "upload", "folder", "limit", "name", "period", "composer",
                              "instrumentation", "eval_split", "max_unaligned")]
    outputs = [ui["job"], ui["status"], ui["files"], ui["datasets"]]
    ui["build"].click(bind(build, backend), inputs, outputs, api_name="dataset_build", concurrency_limit=None)
    ui["cancel"].click(bind(cancel, backend), ui["job"], ui["status"], api_name="dataset_cancel")
    ui["refresh"].click(bind(list_datasets, backend), None, ui["datasets"], api_name="dataset_list")
    ui["refresh_folders"].click(bind(list_folders, backend), None, ui["folder"], api_name="dataset_folders")


def listen_load(backend: Backend, app) -> None:
    app.load(bind(list_folders, backend), None, ui["folder"], api_name=False)
    app.load(bind(watch, backend), ui["job"], [ui["job"], ui["status"], ui["files"], ui["datasets"]],
             api_name=False, concurrency_limit=None, show_progress="hidden")


def list_datasets(backend: Backend):
    return [[d.name, d.pieces, d.prompts, d.train, d.eval, d.warnings] for d in backend.datasets()]


def list_folders(backend: Backend):
    folders = backend.import_folders()
    return gr.update(choices=folders, value=folders[0] if folders else None)


def build(backend: Backend, source, upload, folder, limit, name, period, composer, instrumentation, eval_split,
          max_unaligned=1.0):
    if source == "upload":
        files = upload if isinstance(upload, list) else [upload] if upload else []
        folder = backend.store_uploads([(f, f) for f in files], name)
    elif source == "folder":
        if not folder:
            raise gr.Error("choose an import folder (copy scores into the workspace's imports folder first)")
    elif source != "corpus":
        raise gr.Error(f"unknown source {source!r}")
    job = backend.submit_dataset(name, "corpus" if source == "corpus" else folder,
                                 int(limit) if source == "corpus" and limit else None,
                                 period or "", composer or "", instrumentation or "", float(eval_split),
                                 float(max_unaligned))
    yield from watch(backend, job.id)


def watch(backend: Backend, job_id: str):
    if not job_id:
        yield "", "", [], list_datasets(backend)
        return
    try:
        job = backend.job(job_id)
    except JobError:
        yield "", "", [], list_datasets(backend)
        return
    while not job.is_finished:
        yield job_id, job_line(job, backend.job_position(job_id)), gr.skip(), gr.skip()
        job = backend.wait(job_id, POLL_S)
    rows = [[f["source"], f["piece"], f["status"], f["stage"], f["reason"]] for f in job.result.get("files", [])]
    status = job.result.get("summary", "") if job.state == "done" else job_line(job, -1)
    yield job_id, status, rows, list_datasets(backend)


def cancel(backend: Backend, job_id: str):
    return job_line(backend.cancel(job_id), -1) if job_id else "no build to cancel"
