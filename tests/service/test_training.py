"""The training service: a run started from the command line, with a frozen patch decoder and a dropout
override, resumed through the studio's service with every saved setting (issue 20, item 9)."""
from __future__ import annotations

import dataclasses
import json

import pytest

from pipelines.cli import main
from pipelines.errors import SettingError, TrainingError, WorkspaceError
from pipelines.fields import default_of, range_of, sources_of
from pipelines.service import CPU_BUDGET_S, Backend, Settings, TrainingPlan, TrainingService, TrainingSpec, Workspace
from pipelines.service.training import progress_line
from pipelines.training.config import TrainConfig
from pipelines.training.runlog import read_train_log
from tests.training_data import build_dataset, single_thread_torch  # noqa: F401 (autouse)


@pytest.fixture
def workspace(tmp_path):
    ws = Workspace.open(tmp_path / "workspace")
    data = build_dataset(ws.area("datasets") / "chorales")
    (data / "manifest.json").write_text(json.dumps({"pieces": {}}), encoding="utf-8")  # built, as far as the studio asks
    return ws


def test_a_cli_run_with_a_frozen_patch_decoder_and_dropout_resumes_from_the_studio(workspace):
    run = workspace.area("runs") / "cli-run"
    assert main(["train", "--data", str(workspace.area("datasets") / "chorales"), "--out", str(run),
                 "--preset", "micro", "--epochs", "1", "--max-steps", "1", "--device", "cpu", "--no-key-augment",
                 "--warmup-steps", "1", "--freeze-patch-decoder", "--dropout", "0.05", "--quiet"]) == 0
    backend = Backend(workspace, Settings(device="cpu"))
    try:
        config = backend.training.resume_config("cli-run")
        assert (config.freeze_patch_decoder, config.dropout, config.resume) == (True, 0.05, True)
        job = backend.training.resume("cli-run")
        done = backend.jobs.wait(job.id, 300)
        assert done.state == "done", done.error  # the checkpoint's settings match: not refused as "changed"
        assert backend.training.result(done).status == "max_steps"
        assert backend.training.run_of(done) == "cli-run"
        saved = json.loads((run / "config.json").read_text(encoding="utf-8"))  # rewritten by the resumed run
        assert (saved["freeze_patch_decoder"], saved["dropout"], saved["resume"]) == (True, 0.05, True)
        assert [r["event"] for r in read_train_log(run / "train_log.jsonl")][-2:] == ["resume", "end"]
        assert backend.training.log("cli-run")[-1]["event"] == "end"
    finally:
        backend.close()


def test_a_new_run_needs_a_free_name_and_one_start(workspace):
    backend = Backend(workspace, Settings(device="cpu"))
    try:
        with pytest.raises(TrainingError, match="choose a base model to fine-tune, or a size"):
            TrainingSpec(dataset="chorales", run="r", base="", preset="")
        with pytest.raises(TrainingError, match="has nothing to resume"):
            (workspace.area("runs") / "empty").mkdir()
            (workspace.area("runs") / "empty" / "config.json").write_text(json.dumps(
                {"data_dir": "chorales", "out_dir": "empty", "preset": "micro"}), encoding="utf-8")
            backend.training.resume("empty")
        (workspace.area("runs") / "taken").mkdir()
        (workspace.area("runs") / "taken" / "last.pth").write_bytes(b"")
        with pytest.raises(TrainingError, match="'taken' exists; resume it"):
            backend.training.submit(TrainingSpec(dataset="chorales", run="taken", preset="micro"))
        with pytest.raises(WorkspaceError, match="'taken' already exists.*differ only in capitals"):
            backend.training.submit(TrainingSpec(dataset="chorales", run="Taken", preset="micro"))
        config = backend.training.config(TrainingSpec(dataset="chorales", run="new", preset="micro", lr=0))
        assert config.lr == TrainConfig(data_dir=".", out_dir=".", preset="micro").lr  # 0: the config's own rate
    finally:
        backend.close()


def test_the_spec_mirrors_train_config():
    assert sources_of(TrainingSpec)
    for name, (config, field) in sources_of(TrainingSpec).items():
        assert config is TrainConfig and field == name
        assert default_of(TrainingSpec, name) == default_of(TrainConfig, name), name
        assert range_of(TrainingSpec, name) == range_of(TrainConfig, name), name
    with pytest.raises(SettingError, match="must be a whole number"):
        TrainingSpec(dataset="chorales", run="r", preset="micro", epochs=2.5)


def test_the_status_line_of_a_step_reads_in_words():
    step = {"event": "step", "step": 3, "total_steps": 10, "loss": 2.34567, "eta_s": 4.6}
    assert progress_line(step) == "step 3 of 10, loss 2.346"  # the job's progress bar says the time left


def write_run(workspace, name: str, records: list[dict], config: dict | None = None) -> None:
    """A run folder as the loop leaves it: a checkpoint, its log and (optionally) its config.json."""
    folder = workspace.area("runs") / name
    folder.mkdir()
    (folder / "last.pth").write_bytes(b"")
    (folder / "train_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    if config is not None:
        (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")


def test_a_run_name_says_whether_it_can_start_or_resume(workspace):
    backend = Backend(workspace, Settings(device="cpu"))
    try:
        start = {"event": "start", "step": 0, "device": "cpu"}
        write_run(workspace, "done", [start, {"event": "end", "status": "max_steps", "step": 300}])
        write_run(workspace, "stopped", [start, {"event": "step", "step": 40}, {"event": "end", "status": "cancelled",
                                                                              "step": 40}])
        write_run(workspace, "crashed", [start, {"event": "step", "step": 12}])
        states = {run: backend.training.run_state(run) for run in ("fresh", "done", "stopped", "crashed", "../x", "")}
        assert {run: s.state for run, s in states.items()} == {
            "fresh": "new", "done": "ended", "stopped": "resumable", "crashed": "resumable", "../x": "invalid",
            "": "invalid"}
        assert [run for run, s in states.items() if s.can_start] == ["fresh"]
        assert [run for run, s in states.items() if s.can_resume] == ["stopped", "crashed"]
        assert states["done"].note == ("run 'done' stopped at the step limit after 300 steps; choose another name "
                                       "for a new run")
        assert states["stopped"].note.startswith("run 'stopped' was cancelled at step 40; Resume goes on")
        assert states["crashed"].note.startswith("run 'crashed' stopped before its end at step 12")
        assert "'..' is not allowed" in states["../x"].note
    finally:
        backend.close()


def test_a_run_being_trained_can_neither_start_nor_resume(workspace):
    backend = Backend(workspace, Settings(device="cpu"))
    try:
        job = backend.training.submit(TrainingSpec(dataset="chorales", run="busy", preset="micro", epochs=1,
                                                   max_steps=1, warmup_steps=0))
        state = backend.training.run_state("busy")  # queued or running: active until the job has finished
        finished = backend.jobs.wait(job.id, 300)
        assert state.state == "active" and not state.can_start and not state.can_resume, state
        assert "'busy' is" in state.note and "now" in state.note
        assert finished.state == "done", finished.error
        assert backend.training.run_state("busy").state == "ended"
    finally:
        backend.close()


def test_the_plan_counts_the_loops_steps_and_times_them_by_an_earlier_run(workspace):
    backend = Backend(workspace, Settings(device="cpu"))
    try:
        settings = dict(dataset="chorales", base="", preset_name="micro", epochs=3, max_steps=0, batch_size=3,
                        grad_accum=1, lora_rank=0)
        rough = backend.training.plan(**settings)
        assert (rough.steps_per_epoch, rough.steps, rough.device) == (2, 6, "cpu")  # 4 pieces in batches of 3
        assert rough.pace.startswith("a rough figure") and rough.seconds_per_step > 0
        assert backend.training.plan(**{**settings, "max_steps": 5}).steps == 5
        assert backend.training.plan(**{**settings, "grad_accum": 2}).steps_per_epoch == 1
        job = backend.training.submit(TrainingSpec(dataset="chorales", run="paced", preset="micro", epochs=3,
                                                   batch_size=3, max_steps=2, warmup_steps=0))
        assert backend.jobs.wait(job.id, 300).state == "done"
        log = backend.training.log("paced")
        started = next(r for r in log if r["event"] == "start")
        assert started["steps_per_epoch"] == rough.steps_per_epoch  # the loop counts as the plan does
        measured = backend.training.plan(**settings)
        assert measured.pace == "measured in run 'paced'" and measured.seconds_per_step != rough.seconds_per_step
        assert backend.training.plan(**{**settings, "batch_size": 2}).pace.startswith("a rough figure")
        assert "on the CPU: 6 steps (2 an epoch)" in measured.describe()
    finally:
        backend.close()


def test_on_a_cpu_a_long_run_is_fitted_to_a_few_minutes():
    long = TrainingPlan(steps=360, steps_per_epoch=36, seconds_per_step=10.0, pace="p", device="cpu")
    assert TrainingService.fit_to_machine(long, 100) == (30, 3)  # 30 steps of 10 s, a tenth of them warming up
    assert long.steps_within(CPU_BUDGET_S) == 30 and long.describe().startswith("about 1 h 00 min on the CPU")
    short = dataclasses.replace(long, steps=20)
    assert TrainingService.fit_to_machine(short, 100) == (0, 100)  # it ends within the budget: left alone
    gpu = dataclasses.replace(long, device="cuda")
    assert TrainingService.fit_to_machine(gpu, 100) == (0, 100)  # a GPU keeps the config's defaults
    unknown = dataclasses.replace(long, seconds_per_step=None, device="mps")
    assert TrainingService.fit_to_machine(unknown, 100) == (0, 100)
    assert "no pace is known" in unknown.describe()
