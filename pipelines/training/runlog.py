"""The run folder's JSON-lines log: one record per optimizer step, evaluation and run event.

Records: `{"event": "start"|"resume"|"step"|"eval"|"end", "time": unix seconds, ...}`;
step records carry `epoch, step, total_steps, loss, lr, grad_norm, chars_per_s, eta_s`,
eval records `epoch, step, eval_loss, train_loss, best`. The file is appended line
by line (the UI reads it while training runs); `read_train_log` ignores a last
line still being written and, after a resume, drops the step records of the
interrupted run beyond the checkpoint it resumed from.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from pipelines.errors import TrainingError

LOG_NAME = "train_log.jsonl"


class RunLog:
    """Appends records to the log file (main process only)."""

    def __init__(self, path: Path, enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled

    def write(self, record: dict) -> dict:
        record = {"time": round(time.time(), 3), **record}
        if self.enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8", newline="\n") as f:
                f.write(json.dumps(record) + "\n")
                f.flush()
                if record.get("event") != "step":  # a sync per step costs more than the step on some disks
                    os.fsync(f.fileno())
        return record


def read_train_log(path: str | os.PathLike) -> list[dict]:
    """The records of a run, in order, as the UI plots them."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TrainingError(f"{path}: no training log") from None
    lines = text.split("\n")
    if lines and lines[-1]:
        lines = lines[:-1]  # a record still being written
    records: list[dict] = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise TrainingError(f"{path}:{n}: not a JSON record ({e.msg})") from None
        if record.get("event") == "resume":
            resumed_at = record.get("step", 0)
            records = [r for r in records if r.get("step", 0) <= resumed_at or r.get("event") in ("start", "resume")]
        records.append(record)
    return records
