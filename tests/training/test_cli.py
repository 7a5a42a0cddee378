"""`notagen train` from the command line, including Ctrl-C-free cancel via --max-steps and --resume."""
from __future__ import annotations

from pipelines.cli import main
from pipelines.model.checkpoint import load_checkpoint
from pipelines.training import read_train_log
from tests.training_data import build_dataset, single_thread_torch  # noqa: F401 (autouse)


def test_train_command_runs_and_resumes(tmp_path, capsys):
    data = build_dataset(tmp_path / "data")
    out = tmp_path / "run"
    args = ["train", "--data", str(data), "--out", str(out), "--preset", "micro", "--epochs", "1",
            "--device", "cpu", "--no-key-augment", "--warmup-steps", "1"]
    assert main(args + ["--max-steps", "2"]) == 0
    printed = capsys.readouterr().out
    assert "step 2/2" in printed and "max_steps after 2 steps" in printed
    assert load_checkpoint(out / "best.pth").card.config.hidden_size == 64
    assert main(args + ["--max-steps", "2", "--resume", "--quiet"]) == 0  # already done: nothing more to do
    assert [r["event"] for r in read_train_log(out / "train_log.jsonl")][-2:] == ["resume", "end"]
    assert main(args + ["--max-steps", "3", "--resume"]) == 2  # changed schedule: refused with a message
    assert "max_steps" in capsys.readouterr().err
