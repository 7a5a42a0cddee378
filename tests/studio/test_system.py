"""The system strip and the job lines say what this machine has: no GPU queue or VRAM on a CPU machine; the strip
follows a job starting or ending at once."""
import time

import gradio as gr

from pipelines.service import Backend, Generation, GenerationSpec, Job
from studio import system
from studio.job_follow import job_line
from studio.piece_view import heading


def test_a_waiting_job_names_its_place_and_no_gpu():
    generation = Job(id="g", kind="generate", lane="gpu", params={}, state="queued")
    build = Job(id="d", kind="dataset", lane="cpu", params={}, state="queued")
    assert job_line(generation, 2) == "waiting: number 2 in line (one generation, training or DPO job runs at a time)"
    assert job_line(build, 1) == "waiting: number 1 in line"
    assert "GPU" not in job_line(generation, 2) + job_line(build, 1)


def test_the_strip_on_a_cpu_machine_shows_no_vram_or_gpu(tmp_path):
    backend = Backend.open(tmp_path / "workspace")
    try:
        backend.settings.device = "cpu"
        line = system.status_line(backend)
    finally:
        backend.close()
    assert line.startswith("**CPU** (no GPU in use)") and line.endswith("| idle")
    assert "VRAM" not in line and "GPU idle" not in line


def test_a_piece_heading_names_its_prompt_in_words():
    entry = Generation(model="demo", prompt="Baroque_Bach, Johann Sebastian_Choral", seed=3, status="ok",
                       period="Baroque", composer="Bach, Johann Sebastian", instrumentation="Choral", seconds=1.5, id=7)
    assert heading(entry) == "**#7** Baroque / Bach, Johann Sebastian / Choral - seed 3 - ok (1.5 s, model demo)"


def test_the_strip_refreshes_as_soon_as_a_job_starts_or_ends_and_sends_nothing_otherwise(tiny_backend):
    backend = tiny_backend
    status, rows, pick, seen = system.check(backend, (-1, 0.0))  # the first tick: a refresh
    assert status.endswith("| idle") and rows == [] and seen[0] == backend.jobs.version
    quiet = system.check(backend, (backend.jobs.version, time.monotonic()))
    assert all(part == gr.skip() for part in quiet)  # nothing started or ended: nothing sent
    job = backend.generation.submit(GenerationSpec("models/tiny.pth", "Baroque", "Bach, Johann Sebastian", "Choral",
                                                   max_patches=4))
    before = seen[0]
    status, rows, pick, seen = system.check(backend, (before, time.monotonic()))  # a change: at once
    assert [row[0] for row in rows] == [job.id] and seen[0] > before
    backend.jobs.wait(job.id, 120)
    status, rows, _, _ = system.check(backend, seen)
    assert rows[0][2] == "done" and status.endswith("| idle")
