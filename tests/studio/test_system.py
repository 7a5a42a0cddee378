"""The system strip and the job lines say what this machine has: no GPU queue or VRAM on a CPU machine."""
from pipelines.service import Backend, Generation, Job
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
