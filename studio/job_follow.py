"""Following a job from a tab: its status line, its cancel button, and the poll loop that keeps both current.

Each tab that starts long work (Generate, Train, DPO, Dataset) has one `JobFollow`. The
job id is kept in the browser (BrowserState), so after a refresh the tab finds its job
again. The tab says what to show while the job runs and once it has finished; the loop,
the place in line and the cancel are the same everywhere.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator

import gradio as gr

from pipelines.errors import JobError, NotaGenError
from pipelines.service import Backend, Job
from studio.guard import bind


def job_line(job: Job, position: int) -> str:
    """One line a musician reads about a job (`position`: its place in line, 0 running, -1 finished)."""
    if job.state == "queued":  # generation, training and DPO share one line, whatever the device
        shared = " (one generation, training or DPO job runs at a time)" if job.lane == "gpu" else ""
        return f"waiting: number {position} in line{shared}" if position > 0 else "waiting"
    if job.state == "running":
        progress = f" ({job.done}/{job.total})" if job.total else ""
        return f"running{progress}: {job.message}"
    if job.state == "failed":
        return f"failed: {job.error}"
    if job.state == "cancelled":  # the queue's own reason ("cancelled by the user") says nothing more
        return f"cancelled: {job.error}" if job.error and not job.error.startswith("cancelled") else "cancelled"
    return "finished"


class JobFollow:
    """The job part of a tab. `render_cancel` and `render_status` place the widgets; `follow` is the loop."""

    def __init__(self, kind: str, what: str, poll_s: float, elem_prefix: str):
        self.kind = kind  # the job kind this tab starts
        self.what = what  # how the tab names its job: "generation", "training", ...
        self.poll_s = poll_s
        self.prefix = elem_prefix
        self.job: gr.BrowserState | None = None
        self.status: gr.Markdown | None = None
        self.cancel: gr.Button | None = None

    def render_cancel(self) -> gr.Button:
        self.cancel = gr.Button("Cancel", variant="stop", elem_id=f"{self.prefix}-cancel")
        return self.cancel

    def render_status(self) -> gr.Markdown:
        self.status = gr.Markdown(elem_id=f"{self.prefix}-status")
        self.job = gr.BrowserState("", storage_key=f"notagen-{self.kind}-job")
        return self.status

    def outputs(self, *views) -> list:
        """What a follow yields into: the kept job id, the status line, then the tab's own views."""
        return [self.job, self.status, *views]

    def listen(self, backend: Backend) -> None:
        self.cancel.click(bind(self.cancel_job, backend), self.job, self.status, api_name=f"{self.kind}_cancel",
                          concurrency_limit=None)

    def cancel_job(self, backend: Backend, job_id: str) -> str:
        if not job_id:
            return f"no {self.what} to cancel"
        return job_line(backend.jobs.cancel(job_id), -1)

    def follow(self, backend: Backend, job_id: str, empty: tuple, running: Callable[[Job, bool], tuple],
               finished: Callable[[Job], tuple]) -> Iterator[tuple]:
        """Yield (job id, status line, *views) until the job has finished.

        `empty`: the views when there is no job; `running(job, first)`: the views while it
        waits or runs; `finished(job)`: (status line, *views) once it has ended.
        """
        if not job_id:
            yield "", "", *empty
            return
        try:
            job = backend.jobs.get(job_id)
        except JobError:  # a job of an earlier workspace, or one the browser made up
            yield "", "", *empty
            return
        if job.kind != self.kind:
            raise NotaGenError(f"job {job_id} is not a {self.what}")
        first = True
        while not job.is_finished:
            yield job_id, job_line(job, backend.jobs.position(job_id)), *running(job, first)
            first = False
            job = backend.jobs.wait(job_id, self.poll_s)
        yield job_id, *finished(job)
