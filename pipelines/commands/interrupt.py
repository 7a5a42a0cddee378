"""Ctrl-C for long commands: the first asks the job to stop after its current step, a second aborts."""
from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def ctrl_c_stops(message: str = "stopping after this step (Ctrl-C again to abort)") -> Iterator[Callable[[], bool]]:
    """Yields a `should_stop()` for the job; restores the previous handler afterwards."""
    asked = threading.Event()

    def on_interrupt(signum, frame):
        if asked.is_set():
            raise KeyboardInterrupt
        asked.set()
        print(message, file=sys.stderr)

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield asked.is_set
    finally:
        signal.signal(signal.SIGINT, previous)
