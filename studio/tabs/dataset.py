"""The Dataset tab: scores in (upload, a folder in the workspace's imports, or the built-in corpus), training data out.

The form is a side column that shows only the boxes of the chosen source, with the status line
under its buttons. The build runs as a job with a progress line; the main column lists each
file's result (converted, unchanged, failed with its stage and reason) and every dataset with
its piece and prompt counts. The options' defaults and ranges are DatasetConfig's (through DatasetSpec).
"""
from __future__ import annotations

import gradio as gr

from pipelines.errors import DatasetError, NotaGenError
from pipelines.fields import default_of, range_of
from pipelines.service import CORPUS, SCORE_UPLOADS, Backend, DatasetSpec, Job
from studio.controls import number, slider
from studio.guard import bind
from studio.job_follow import JobFollow, job_line

TITLE = "Dataset"
SOURCES = {"upload": "Upload score files", "folder": "A folder in the workspace's imports",
           CORPUS: "Built-in corpus (music21: Bach chorales, string quartets, ...)"}
# The widgets the build handler gets, by name (the DatasetSpec's where they share one).
BUILD_FIELDS = ("source", "upload", "folder", "corpus_limit", "name", "period", "composer", "instrumentation",
                "eval_split", "max_unaligned_share")
ui: dict = {}
job = JobFollow("dataset", "build", poll_s=0.5, elem_prefix="dataset")


def render(backend: Backend) -> None:
    spec = DatasetSpec
    with gr.Row():
        with gr.Column(scale=2, min_width=360):  # the form, with its status line under the buttons
            ui["source"] = gr.Radio([(v, k) for k, v in SOURCES.items()], value=CORPUS, label="Scores from",
                                    elem_id="dataset-source")
            shown = source_boxes(CORPUS)  # only the boxes of the chosen source
            with gr.Group(visible=shown[0]["visible"]) as ui["upload_box"]:
                ui["upload"] = gr.File(label="Score files", file_count="multiple", file_types=list(SCORE_UPLOADS),
                                       height=140)
            with gr.Row(visible=shown[1]["visible"], equal_height=True) as ui["folder_box"]:
                ui["folder"] = gr.Dropdown(label="Import folder (inside the workspace's imports)",
                                           allow_custom_value=True, scale=3)
                ui["refresh_folders"] = gr.Button("Refresh", size="sm", scale=1, min_width=80)
            # no minimum here: a wrong number reaches the build, which says why in the status line
            ui["corpus_limit"] = number(spec, "corpus_limit", "Corpus pieces (first N; chorales come first)",
                                        visible=shown[2]["visible"], elem_id="dataset-corpus-limit")
            ui["name"] = gr.Textbox(label="Dataset name", value="corpus", elem_id="dataset-name")
            with gr.Accordion("Labels for every piece (empty: suggested from each score) and options", open=False):
                ui["period"] = gr.Textbox(label="Period")
                ui["composer"] = gr.Textbox(label="Composer (Last, First)")
                ui["instrumentation"] = gr.Textbox(label="Instrumentation")
                ui["eval_split"] = share_slider("eval_split", "Share held out for evaluation", 0.05,
                                                fallback=(0.0, 0.5))
                ui["max_unaligned_share"] = share_slider(
                    "max_unaligned_share", "Leave out pieces whose voices misalign in more than this share of their "
                    "bars (1: keep all)", 0.01, elem_id="dataset-max-unaligned")
            with gr.Row():
                ui["build"] = gr.Button("Build dataset", variant="primary", elem_id="dataset-build")
                job.render_cancel()
            job.render_status()
        with gr.Column(scale=3):  # what the build made, and every dataset
            ui["files"] = gr.Dataframe(headers=["file", "piece", "status", "stage", "reason"], type="array",
                                       interactive=False, label="Files of the last build", wrap=True,
                                       column_widths=["22%", "18%", "11%", "11%", "38%"], max_height=420,
                                       elem_id="dataset-files")
            ui["datasets"] = gr.Dataframe(headers=["dataset", "pieces", "prompts", "train", "eval", "with warnings"],
                                          type="array", interactive=False, label="Datasets", max_height=300,
                                          elem_id="dataset-list")
            ui["refresh"] = gr.Button("Refresh the list", size="sm")


def source_boxes(source: str) -> tuple[dict, dict, dict]:
    """Which boxes the source needs: (upload, import folder, corpus limit), each shown or hidden."""
    return (gr.update(visible=source == "upload"), gr.update(visible=source == "folder"),
            gr.update(visible=source == CORPUS))


def share_slider(name: str, label: str, step: float, fallback: tuple[float, float] = (0.0, 1.0),
                 **kwargs) -> gr.Slider:
    """A share of DatasetSpec: over the config's declared range, else over `fallback` (a share is 0 to 1)."""
    low, high = range_of(DatasetSpec, name)
    if low is None or high is None:
        return gr.Slider(*fallback, value=default_of(DatasetSpec, name), step=step, label=label, **kwargs)
    return slider(DatasetSpec, name, label, step, **kwargs)


def listen(backend: Backend) -> None:
    outputs = job.outputs(ui["files"], ui["datasets"])
    ui["build"].click(bind(build, backend), inputs_kwargs={k: ui[k] for k in BUILD_FIELDS}, outputs=outputs,
                      api_name="dataset_build", concurrency_limit=None)
    job.listen(backend)
    ui["source"].change(source_boxes, ui["source"], [ui["upload_box"], ui["folder_box"], ui["corpus_limit"]],
                        api_name=False, show_progress="hidden")
    ui["refresh"].click(bind(list_datasets, backend), None, ui["datasets"], api_name="dataset_list")
    ui["refresh_folders"].click(bind(list_folders, backend), None, ui["folder"], api_name="dataset_folders")


def listen_load(backend: Backend, app) -> None:
    app.load(bind(list_folders, backend), None, ui["folder"], api_name=False)
    app.load(bind(watch, backend), job.job, job.outputs(ui["files"], ui["datasets"]), api_name=False,
             concurrency_limit=None, show_progress="hidden")


def list_datasets(backend: Backend):
    return [[d.name, d.pieces, d.prompts, d.train, d.eval, d.warnings] for d in backend.datasets.list()]


def list_folders(backend: Backend):
    folders = backend.datasets.import_folders()
    return gr.update(choices=folders, value=folders[0] if folders else None)


def build(backend: Backend, source=CORPUS, upload=None, folder=None, corpus_limit=None, **options):
    """`options`: the DatasetSpec's name, labels and shares, by name.

    Input the build refuses (a bad name, a limit below 1, a build of this dataset already
    queued or running) is said in the status line; the Files and Datasets tables keep what they show.
    """
    try:
        job_id = start_build(backend, source, upload, folder, corpus_limit, **options)
    except (NotaGenError, ValueError) as e:
        yield job.note(f"**not started:** {e}", views=2)
        return
    yield from watch(backend, job_id)


def start_build(backend: Backend, source, upload, folder, corpus_limit, **options) -> str:
    """Check the form, store an upload, submit the build; the job's id."""
    if source == "upload":
        files = upload if isinstance(upload, list) else [upload] if upload else []
        folder = backend.datasets.store_uploads([(f, f) for f in files], options.get("name") or "")
    elif source == "folder":
        if not folder:
            raise DatasetError("choose an import folder (copy scores into the workspace's imports folder first)")
    elif source != CORPUS:
        raise DatasetError(f"unknown source {source!r}")
    limit = corpus_limit if source == CORPUS and corpus_limit not in (None, "") else None
    spec = DatasetSpec(source=CORPUS if source == CORPUS else folder, corpus_limit=limit, **options)
    return backend.datasets.submit(spec).id


def watch(backend: Backend, job_id: str):
    def finished(done: Job) -> tuple:
        result = backend.datasets.result(done)
        rows = [[f.source, f.piece, f.status, f.stage, f.reason] for f in result.files]
        if done.state != "done":
            line = job_line(done, -1)
        elif result.empty:  # finished, yet nothing usable: a failure to the musician, with each file's reason
            line = f"**failed:** {result.summary}"
        else:
            line = result.summary
        return line, rows, list_datasets(backend)

    yield from job.follow(backend, job_id, ([], list_datasets(backend)), lambda current, first: (gr.skip(), gr.skip()),
                          finished)
