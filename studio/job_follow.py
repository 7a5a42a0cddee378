"""Following a job from a tab: its status line, its progress bar, its cancel button, and the poll loop that keeps
them current.

Each tab that starts long work (Generate, Train, DPO, Dataset) has one `JobFollow`. The tab
shows one job, kept per page in a hidden box (not in the browser's storage): the one it
started, or on a page load the job the backend names for its kind (`JobQueue.latest`: the one
running, else the next in line, else the newest), so a reload, or a collaborator's second
browser, finds the running job again. The status, the bar, the cancel button and the widgets
a tab fills from its job (`fill`: the Train tab's run name, which "Resume" reads) all follow
that job. While it runs a bar says its stage, its count and the time left; the cancel button
can act only while there is something to cancel. The tab says what to show while the job runs
and once it has finished; the loop, the place in line and the cancel are the same everywhere.
"""
from __future__ import annotations

import html
from collections.abc import Callable, Iterator

import gradio as gr

from pipelines.errors import JobError, NotaGenError
from pipelines.service import Backend, Job
from pipelines.service.jobs import time_left
from studio.guard import bind


def job_line(job: Job, position: int) -> str:
    """One line a musician reads about a job (`position`: its place in line, 0 running, -1 finished)."""
    if job.state == "queued":  # generation, training and DPO share one line, whatever the device
        shared = " (one generation, training or DPO job runs at a time)" if job.lane == "gpu" else ""
        return f"waiting: number {position} in line{shared}" if position > 0 else "waiting"
    if job.state == "running":
        eta = job.eta_s()
        counts = [f"{job.done}/{job.total}"] if job.total else []
        counts += [time_left(eta)] if eta is not None else []
        return f"running ({', '.join(counts)}): {job.message}" if counts else f"running: {job.message}"
    if job.state == "failed":
        return f"failed: {job.error}"
    if job.state == "cancelled":  # the queue's own reason ("cancelled by the user") says nothing more
        return f"cancelled: {job.error}" if job.error and not job.error.startswith("cancelled") else "cancelled"
    return "finished"


def progress_bar(job: Job, now: float | None = None) -> str:
    """A running job's bar as HTML: what the job is, its stage, done / total and the time left; "" when it does not
    run."""
    if job.state != "running":
        return ""
    eta = job.eta_s(now)
    counts = f"{job.done} / {job.total}" if job.total else ""
    left = time_left(eta) if eta is not None else ("estimating the time left" if job.total else "")
    side = " &middot; ".join(html.escape(p) for p in (counts, left) if p)
    share = min(100.0, 100.0 * job.done / job.total) if job.total else 0.0
    track = (f'<div class="job-track"><div class="job-fill" style="width:{share:.1f}%"></div></div>' if job.total
             else '<div class="job-track job-busy"><div class="job-fill"></div></div>')
    return (f'<div class="job-progress" role="progressbar" aria-valuenow="{job.done}" aria-valuemax="{job.total}">'
            f'<div class="job-title">{html.escape(job.title)}</div>'
            f'<div class="job-words"><span class="job-stage">{html.escape(job.message or "running")}</span>'
            f'<span class="job-left">{side}</span></div>{track}</div>')


class JobFollow:
    """The job part of a tab. `render_cancel` and `render_status` place the widgets; `follow` is the loop."""

    def __init__(self, kind: str, what: str, poll_s: float, elem_prefix: str):
        self.kind = kind  # the job kind this tab starts
        self.what = what  # how the tab names its job: "generation", "training", ...
        self.poll_s = poll_s
        self.prefix = elem_prefix
        self.job: gr.Textbox | None = None  # the id of the job the tab shows (hidden; per page, like a State)
        self.status: gr.Markdown | None = None
        self.bar: gr.HTML | None = None
        self.cancel: gr.Button | None = None
        self.fills: list[tuple[gr.components.Component, Callable[[Job], object]]] = []

    def render_cancel(self) -> gr.Button:
        """A quiet button, off until the tab shows a job that waits or runs."""
        self.cancel = gr.Button("Cancel", variant="secondary", size="md", interactive=False,
                                elem_id=f"{self.prefix}-cancel", elem_classes="cancel-button")
        return self.cancel

    def render_status(self) -> gr.Markdown:
        self.status = gr.Markdown(elem_id=f"{self.prefix}-status")
        self.bar = gr.HTML(elem_id=f"{self.prefix}-progress", elem_classes="job-bar")
        # Per page, like a gr.State, but named in the API's answers (a client learns its job's id there).
        self.job = gr.Textbox("", visible=False, elem_id=f"{self.prefix}-job")
        return self.status

    def fill(self, widget, value_of: Callable[[Job], object]) -> None:
        """Set `widget` to `value_of(job)` whenever the tab takes up a job (a start, a page load)."""
        self.fills.append((widget, value_of))

    def outputs(self, *views) -> list:
        """What a follow yields into: the job id, the status line, the tab's own views, the bar, the cancel
        button, then the widgets filled from the job."""
        return [self.job, self.status, *views, self.bar, self.cancel, *(w for w, _ in self.fills)]

    def note(self, line: str, views: int) -> tuple:
        """A status line alone, for a tab's handler that yields into `outputs` with `views` views of its own
        (e.g. "not started: ..."); the rest stays as it is."""
        return (gr.skip(), line, *[gr.skip()] * (views + 2 + len(self.fills)))

    def listen(self, backend: Backend) -> None:
        self.cancel.click(bind(self.cancel_job, backend), self.job, [self.status, self.cancel],
                          api_name=f"{self.kind}_cancel", concurrency_limit=None)

    def cancel_job(self, backend: Backend, job_id: str) -> tuple:
        """Cancel the job the tab shows."""
        job = self.resolve(backend, job_id)
        if job is None or job.is_finished:
            return f"no {self.what} is waiting or running", gr.update(interactive=False)
        return job_line(backend.jobs.cancel(job.id), -1), gr.update(interactive=False)

    def resolve(self, backend: Backend, job_id: str) -> Job | None:
        """The job the tab shows: the one it keeps, else (a page load) the backend's latest of its kind."""
        if job_id:
            try:
                job = backend.jobs.get(job_id)
            except JobError:  # a job of an earlier workspace, or one the page made up
                return None
            if job.kind != self.kind:
                raise NotaGenError(f"job {job_id} is not a {self.what}")
            return job
        return backend.jobs.latest(self.kind)

    def follow(self, backend: Backend, job_id: str, empty: tuple, running: Callable[[Job, bool], tuple],
               finished: Callable[[Job], tuple]) -> Iterator[tuple]:
        """Yield (job id, status line, *views, bar, cancel, *filled) until the job has finished.

        `job_id`: the job the tab keeps ("" on a page load: the backend's latest of the tab's
        kind). `empty`: the views when there is no job; `running(job, first)`: the views while
        it waits or runs; `finished(job)`: (status line, *views) once it has ended.
        """
        job = self.resolve(backend, job_id)
        if job is None:
            yield "", "", *empty, "", gr.update(interactive=False), *[gr.skip()] * len(self.fills)
            return
        first = True
        while not job.is_finished:
            line = "" if job.state == "running" else job_line(job, backend.jobs.position(job.id))
            yield job.id, line, *running(job, first), progress_bar(job), gr.update(interactive=True), *self._filled(
                job, first)
            first = False
            job = backend.jobs.wait(job.id, self.poll_s)
        yield job.id, *finished(job), "", gr.update(interactive=False), *self._filled(job, first)

    def _filled(self, job: Job, first: bool) -> list:
        """The widgets filled from the job: set as the tab takes the job up, then left alone."""
        return [value_of(job) if first else gr.skip() for _, value_of in self.fills]
