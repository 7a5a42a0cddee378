"""Run a function over many tasks in worker processes, each task with a time limit.

Workers are started with the `spawn` method (the only one Windows has), so the
function must be importable by name and tasks and results picklable. Each worker
talks to the parent over its own pipe, so stopping one never disturbs another.
A worker that exceeds the time limit is terminated and replaced and its task
reported as timed out; a task that raises, or whose worker dies, is reported as
failed; the other tasks go on. `should_stop()` ends the run early: workers are
terminated and the unfinished tasks are left out of the results.

At most `MAX_WORKERS` (61) processes run, on every OS: `multiprocessing.connection.wait` waits on
at most 63 handles at once on Windows (see pipelines/fields.py).
"""
from __future__ import annotations

import itertools
import multiprocessing
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import Any

from pipelines.fields import MAX_WORKERS

_POLL_S = 0.05


def default_workers() -> int:
    """One worker per core, at most `MAX_WORKERS`."""
    return max(1, min(os.cpu_count() or 1, MAX_WORKERS))


@dataclass
class TaskFailure:
    """A task that did not return a result: kind 'timeout', 'error' or 'crash', and a message for the report."""
    kind: str
    message: str


def _serve(function: Callable, connection) -> None:
    connection.send(("ready", None, None))
    while True:
        item = connection.recv()
        if item is None:
            return
        index, task = item
        try:
            result = function(task)
        except Exception as e:  # reported as this task's failure; the worker goes on with the next task
            result = TaskFailure("error", f"{type(e).__name__}: {e}")
        connection.send(("done", index, result))


class _Worker:
    def __init__(self, context, function: Callable, number: int):
        self.connection, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(function, child), daemon=True,
                                       name=f"notagen-dataset-{number}")
        self.process.start()
        child.close()
        self.ready = False
        self.task: int | None = None
        self.started = 0.0

    def give(self, index: int, task: Any) -> None:
        self.task, self.started = index, time.monotonic()
        self.connection.send((index, task))

    def close(self, graceful: bool) -> None:
        if graceful and self.process.is_alive() and self.task is None:
            try:
                self.connection.send(None)
                self.process.join(2)
            except (BrokenPipeError, OSError):
                pass  # already gone; terminated below
        if self.process.is_alive():
            self.process.terminate()
        self.process.join(5)
        self.connection.close()


def run_tasks(function: Callable[[Any], Any], tasks: list[Any], workers: int, time_limit_s: float | None,
              should_stop: Callable[[], bool] | None = None) -> Iterator[tuple[int, Any]]:
    """Yield (task index, result or TaskFailure) as tasks finish, in completion order."""
    if not tasks:
        return
    context = multiprocessing.get_context("spawn")
    pending = deque(enumerate(tasks))
    pool: list[_Worker] = []
    remaining = len(tasks)
    stopped = False
    numbers = itertools.count(1)

    def start_worker() -> None:
        pool.append(_Worker(context, function, next(numbers)))

    def retire(worker: _Worker) -> None:
        worker.close(graceful=False)
        pool.remove(worker)
        if pending:
            start_worker()

    try:
        for _ in range(max(1, min(workers, MAX_WORKERS, len(tasks)))):
            start_worker()
        while remaining:
            if should_stop and should_stop():
                stopped = True
                return
            for worker in pool:
                if worker.ready and worker.task is None and pending:
                    worker.give(*pending.popleft())
            for connection in wait([w.connection for w in pool], timeout=_POLL_S):
                worker = next(w for w in pool if w.connection is connection)
                try:
                    kind, index, result = connection.recv()
                except (EOFError, OSError):
                    continue  # the process died; handled below with its exit code
                if kind == "ready":
                    worker.ready = True
                elif index == worker.task:
                    worker.task = None
                    remaining -= 1
                    yield index, result
            now = time.monotonic()
            for worker in list(pool):
                if worker.process.is_alive():
                    if worker.task is not None and time_limit_s is not None and now - worker.started > time_limit_s:
                        index = worker.task
                        retire(worker)
                        remaining -= 1
                        yield index, TaskFailure("timeout", f"timeout after {time_limit_s:g} s")
                    continue
                if worker.task is None and not worker.ready:
                    raise RuntimeError(f"a dataset worker process failed to start (exit code {worker.process.exitcode})")
                if worker.task is not None:
                    index, code = worker.task, worker.process.exitcode
                    retire(worker)
                    remaining -= 1
                    yield index, TaskFailure("crash", f"the worker process died (exit code {code})")
                else:
                    retire(worker)
    finally:
        for worker in pool:
            worker.close(graceful=not stopped)
