"""Functions for tests/render/test_worker.py that a spawned render worker imports by name."""
import os
import time
from pathlib import Path

from pipelines.errors import AbcError


def pid() -> int:
    return os.getpid()


def note_pid_and_sleep(path: str, seconds: float) -> None:
    Path(path).write_text(str(os.getpid()), encoding="utf-8")
    time.sleep(seconds)


def refuse(text: str) -> None:
    raise AbcError(text)


class Picky(Exception):
    def __init__(self, code: int, detail: str):  # two arguments: does not unpickle from its args
        super().__init__(f"{code}: {detail}")


def raise_picky() -> None:
    raise Picky(7, "odd")
