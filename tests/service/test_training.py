"""The training service: a run started from the command line, with a frozen patch decoder and a dropout
override, resumed through the studio's service with every saved setting (issue 20, item 9)."""
from __future__ import annotations

import json

import pytest

from pipelines.cli import main
from pipelines.errors import SettingError, TrainingError, WorkspaceError
from pipelines.fields import default_of, range_of, sources_of
from pipelines.service import Backend, Settings, TrainingSpec, Workspace
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
    assert progress_line(step) == "step 3 of 10, loss 2.346, about 5 s left"
    assert progress_line({**step, "eta_s": 185.0}).endswith("about 3 min 05 s left")
    assert progress_line({**step, "eta_s": 7800.0}).endswith("about 2 h 10 min left")
