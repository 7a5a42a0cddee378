"""The Train tab's handlers, called directly: Start and Resume are quiet until the run name can use them, the
estimate says how long a run takes (and how much memory) on this machine, and on a CPU a long run is fitted to
a few minutes."""
import json

import gradio as gr
import pytest

from pipelines.service import CPU_BUDGET_S, Backend, Settings, Workspace
from studio.app import build_app
from studio.tabs import train
from tests.training_data import build_dataset

SKIP = gr.skip()
MICRO = {"dataset": "chorales", "base": train.SCRATCH, "preset": "micro", "epochs": 2, "batch_size": 1,
         "grad_accum": 1, "lora_rank": 0}


@pytest.fixture
def backend(tmp_path):
    ws = Workspace.open(tmp_path / "workspace")
    data = build_dataset(ws.area("datasets") / "chorales")  # 4 pieces to train on, 1 to evaluate on
    (data / "manifest.json").write_text(json.dumps({"pieces": {}}), encoding="utf-8")
    backend = Backend(ws, Settings(device="cpu"))
    yield backend
    backend.close()


def stopped_run(backend, name: str, records: list[dict]) -> None:
    folder = backend.workspace.area("runs") / name
    folder.mkdir()
    (folder / "last.pth").write_bytes(b"")
    (folder / "train_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def test_start_and_resume_act_only_where_the_run_name_lets_them(backend):
    stopped_run(backend, "cancelled", [{"event": "start", "step": 0}, {"event": "end", "status": "cancelled",
                                                                       "step": 7}])
    stopped_run(backend, "finished", [{"event": "start", "step": 0}, {"event": "end", "status": "finished",
                                                                      "step": 9}])
    shown = {run: train.run_buttons(backend, run) for run in ("new-run", "cancelled", "finished", "../up")}
    assert {run: (s["interactive"], r["interactive"]) for run, (s, r, _) in shown.items()} == {
        "new-run": (True, False), "cancelled": (False, True), "finished": (False, False), "../up": (False, False)}
    assert shown["new-run"][2] == ""
    assert shown["cancelled"][2].startswith("run 'cancelled' was cancelled at step 7; Resume goes on")
    assert shown["finished"][2] == "run 'finished' finished after 9 steps; choose another name for a new run"


def test_the_estimate_says_how_long_and_how_much_memory_on_this_cpu(backend):
    said = train.estimate(backend, max_steps=0, **MICRO)
    time_line, memory_line = said.split("\n\n")
    assert time_line.startswith("**Time:** about ") and "on the CPU: 8 steps (4 an epoch)" in time_line
    assert memory_line.startswith("**Memory:** ") and "VRAM" not in said  # no VRAM on a CPU machine
    assert train.estimate(backend, max_steps=3, **MICRO).startswith("**Time:** about ")
    assert "3 steps (4 an epoch)" in train.estimate(backend, max_steps=3, **MICRO)
    assert train.estimate(backend, max_steps=0, **{**MICRO, "dataset": None}).startswith("Choose a dataset")
    assert train.estimate(backend, max_steps=0, **{**MICRO, "dataset": "nowhere"}).startswith("No estimate: ")


def test_on_a_cpu_a_long_run_is_fitted_to_a_few_minutes_and_a_short_one_left_alone(backend):
    assert train.fit_to_machine(backend, warmup_steps=100, **MICRO) == (SKIP, SKIP)  # 8 steps end in minutes
    long = {**MICRO, "epochs": 100_000}
    max_steps, warmup = train.fit_to_machine(backend, warmup_steps=100, **long)
    per_step = train.plan(backend, max_steps=0, **long).seconds_per_step
    assert 1 <= max_steps < 400_000 and max_steps * per_step <= CPU_BUDGET_S < (max_steps + 1) * per_step
    assert warmup == min(100, max_steps // 10)
    said = train.estimate(backend, max_steps=0, **long)
    assert f"On this CPU, Max steps {max_steps} ends the run in about" in said and "about about" not in said
    assert "Max steps keeps the run short on this CPU" in train.estimate(backend, max_steps=max_steps, **long)


def test_the_size_box_is_for_training_from_scratch_only(backend):
    assert train.scratch_size(train.SCRATCH)["visible"] is True
    assert train.scratch_size("demo")["visible"] is False
    build_app(backend)
    assert train.ui["preset"].visible is False and train.ui["resume"].interactive is False
