"""Following a job from a tab: a fresh page (a reload, a second browser) finds the running job from the backend,
its bar and cancel button act on that job, and the widgets a tab fills from its job are set as it takes it up."""
from __future__ import annotations

import gradio as gr
import pytest

from pipelines.service import GenerationSpec, Job
from studio.job_follow import JobFollow, progress_bar
from studio.tabs import generate

TINY = "models/tiny.pth"
BACH = ("Baroque", "Bach, Johann Sebastian", "Choral")


@pytest.fixture
def backend(tiny_backend):
    return tiny_backend


def running_generation(backend) -> Job:
    """A generation of the tiny model with no patch limit: it writes until it is cancelled."""
    job = backend.generation.submit(GenerationSpec(TINY, *BACH, max_patches=0, max_seconds=300.0))
    while backend.jobs.get(job.id).state != "running":
        backend.jobs.wait(job.id, 0.05)
    return job


def test_a_fresh_page_finds_the_running_generation_and_its_cancel_stops_that_job(backend):
    job = running_generation(backend)
    page = generate.watch(backend, "")  # a reload: the page keeps no job of its own
    shown = next(page)
    assert shown[0] == job.id and shown[1] == ""  # running: the bar, not a line, says how far
    *_, bar, cancel = shown
    assert 'class="job-progress"' in bar and cancel["interactive"] is True
    assert next(generate.watch(backend, ""))[0] == job.id  # a collaborator's browser: the same job
    line, button = generate.job.cancel_job(backend, shown[0])
    assert line == "running: stopping..." and button["interactive"] is False
    *_, last = page
    assert last[0] == job.id and last[1] == "cancelled" and last[-1]["interactive"] is False
    assert backend.jobs.get(job.id).state == "cancelled"
    # once nothing runs, a fresh page shows the newest generation, and its cancel has nothing to act on
    *_, again = generate.watch(backend, "")
    assert again[0] == job.id and again[1] == "cancelled"
    assert generate.job.cancel_job(backend, job.id)[0] == "no generation is waiting or running"


def test_a_page_with_no_job_of_its_kind_shows_none():
    follow = JobFollow("nothing-yet", "thing", poll_s=0.1, elem_prefix="x")

    class Jobs:
        @staticmethod
        def latest(kind):
            return None

    class Backend:
        jobs = Jobs()

    only = list(follow.follow(Backend(), "", ("view",), None, None))
    assert only == [("", "", "view", "", gr.update(interactive=False))]


def test_a_tab_fills_its_widgets_from_the_job_it_takes_up(backend):
    follow = JobFollow("generate", "generation", poll_s=0.1, elem_prefix="x")
    follow.fill(None, lambda job: f"run of {job.id}")  # e.g. the Train tab's run name, which Resume reads
    job = running_generation(backend)
    page = follow.follow(backend, "", ("empty",), lambda current, first: ("view",), lambda done: ("ended", "view"))
    first, second = next(page), next(page)
    assert first[-1] == f"run of {job.id}" and second[-1] == gr.skip()
    backend.jobs.cancel(job.id)
    *_, last = page
    assert last[1] == "ended" and last[-1] == gr.skip()


def test_the_bar_says_the_stage_the_count_and_the_time_left():
    job = Job(id="j", kind="train", lane="gpu", params={}, state="running", done=30, total=120,
              message="step 30 of 120, loss 2.346", series_started=1000.0, series_from=0)
    bar = progress_bar(job, now=1060.0)  # 30 steps in a minute: 90 to go
    assert "step 30 of 120, loss 2.346" in bar and "30 / 120" in bar and "about 3 min 00 s left" in bar
    assert 'style="width:25.0%"' in bar
    assert "estimating the time left" in progress_bar(job, now=1001.0)
    assert progress_bar(Job(id="j", kind="train", lane="gpu", params={}, state="done")) == ""
