"""Render steps in worker processes that can be stopped: `run_limited(function, args, seconds, what)`.

abc2xml, Verovio, the PDF writer and the synthesizer can take minutes on a long or malformed
piece (a 260 KB one-line ABC took 191 s on two cores), and Python cannot stop a thread. So each
step runs in a worker process under a time limit; a worker that runs over, or whose job is
cancelled, is terminated, and the call raises RenderError saying which step and why.

Workers are kept between calls: a new one imports the module of the function it is started for
(Verovio and abctoolkit for engraving: a few seconds on a small CPU), which is not counted
against a step's limit; after that an ordinary piece pays only for sending its text and
receiving its files. Each call takes an idle worker or starts one,
so threads that render at once do not wait for each other. Workers are started with `spawn`
(the only method Windows has), so the function must be importable by name and its arguments,
result and exceptions picklable; an exception that is not is raised as a RenderError with its text.
"""
from __future__ import annotations

import importlib
import multiprocessing
import pickle
import threading
import time
from collections.abc import Callable
from typing import Any

from pipelines.errors import RenderError

START_LIMIT_S = 120.0  # for a new worker's imports (a cold disk, an antivirus scanning every DLL)
_POLL_S = 0.05

_idle: list["_Worker"] = []
_idle_lock = threading.Lock()


def _serve(connection, preload: tuple[str, ...]) -> None:
    for name in preload:
        importlib.import_module(name)
    connection.send(("ready", None))
    while True:
        try:
            item = connection.recv()
        except EOFError:
            return
        if item is None:
            return
        function, args = item
        try:
            reply = ("value", function(*args))
        except Exception as e:  # handed to the caller, which raises it
            reply = ("error", e)
        try:
            pickle.loads(pickle.dumps(reply))  # an exception with extra arguments may not come back
        except Exception as e:
            what = reply[1] if reply[0] == "error" else e
            reply = ("error", RenderError(f"{type(what).__name__}: {what}"))
        connection.send(reply)


class _Worker:
    def __init__(self, preload: tuple[str, ...]):
        context = multiprocessing.get_context("spawn")
        self.connection, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, preload), daemon=True, name="notagen-render")
        self.process.start()
        child.close()
        self.ready = False

    def _wait_ready(self) -> None:
        if self.ready:
            return
        if not self.connection.poll(START_LIMIT_S):
            self.close()
            raise RenderError(f"the render process did not start within {START_LIMIT_S:g} s")
        try:
            self.connection.recv()
        except (EOFError, OSError):
            self.process.join(5)
            code = self.process.exitcode
            self.close()
            raise RenderError(f"the render process failed to start (exit code {code})") from None
        self.ready = True

    def call(self, function: Callable, args: tuple, seconds: float, what: str,
             should_stop: Callable[[], bool] | None) -> tuple[bool, Any]:
        """(True, value) or (True, exception raised by the step): the worker is fine; raises when it is not."""
        self._wait_ready()
        self.connection.send((function, args))
        deadline = time.monotonic() + seconds
        while True:
            if self.connection.poll(_POLL_S):
                try:
                    kind, value = self.connection.recv()
                except (EOFError, OSError):
                    break  # died while answering; reported below
                return kind == "value", value
            if not self.process.is_alive():
                break
            if should_stop and should_stop():
                self.close()
                raise RenderError(f"{what} was stopped")
            if time.monotonic() > deadline:
                self.close()
                raise RenderError(f"{what} took longer than {seconds:g} s and was stopped; the piece is probably "
                                  "too long or malformed")
        self.process.join(5)
        code = self.process.exitcode
        self.close()
        raise RenderError(f"{what} failed: the render process ended unexpectedly (exit code {code})")

    def close(self) -> None:
        if self.process.is_alive():
            self.process.terminate()
        self.process.join(5)
        self.connection.close()


def run_limited(function: Callable, args: tuple, seconds: float, what: str,
                should_stop: Callable[[], bool] | None = None):
    """`function(*args)` in a worker process; RenderError when it takes longer than `seconds` or
    `should_stop()` says stop (polled every 50 ms), and the worker is then terminated.

    What `function` raises is raised here. `what` names the step in messages ("engraving the score").
    """
    with _idle_lock:
        worker = _idle.pop() if _idle else None
    if worker is None:
        worker = _Worker((function.__module__,))
    try:
        ok, value = worker.call(function, args, seconds, what, should_stop)
    except BaseException:
        worker.close()  # a step still running, or a worker that died or never started
        raise
    with _idle_lock:
        _idle.append(worker)
    if not ok:
        raise value
    return value


def warm_up(*functions: Callable) -> None:
    """Start a worker now, if none is idle, that imports the modules of `functions`, so the next render
    does not wait for them."""
    with _idle_lock:
        if not _idle:
            _idle.append(_Worker(tuple(dict.fromkeys(f.__module__ for f in functions))))


def stop_workers() -> None:
    """End the idle workers (they also end with this process)."""
    with _idle_lock:
        workers, _idle[:] = list(_idle), []
    for worker in workers:
        worker.close()
