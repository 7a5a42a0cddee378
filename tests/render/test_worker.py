"""Render workers: steps run in a kept process, and one that runs over its time limit is really stopped."""
from __future__ import annotations

import os

import pytest

from pipelines.errors import AbcError, RenderError
from pipelines.render.worker import run_limited
from tests.render import worker_tasks


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_steps_run_in_one_kept_worker_process():
    first = run_limited(worker_tasks.pid, (), 30, "asking the pid")
    second = run_limited(worker_tasks.pid, (), 30, "asking the pid")
    assert first == second != os.getpid()  # no process start per call


def test_a_step_over_its_limit_is_terminated_and_the_next_call_gets_a_new_worker(tmp_path):
    noted = tmp_path / "pid"
    with pytest.raises(RenderError, match="sleeping took longer than 0.5 s and was stopped"):
        run_limited(worker_tasks.note_pid_and_sleep, (str(noted), 60), 0.5, "sleeping")
    stopped = int(noted.read_text(encoding="utf-8"))
    assert not alive(stopped)  # a thread would still be sleeping; the process is gone
    assert run_limited(worker_tasks.pid, (), 30, "asking the pid") not in (stopped, os.getpid())


def test_a_stop_request_ends_a_step_at_once(tmp_path):
    noted = tmp_path / "pid"
    with pytest.raises(RenderError, match="sleeping was stopped"):
        run_limited(worker_tasks.note_pid_and_sleep, (str(noted), 60), 120, "sleeping",
                    should_stop=lambda: noted.is_file())
    assert not alive(int(noted.read_text(encoding="utf-8")))


def test_errors_of_a_step_are_raised_in_the_caller_and_the_worker_is_kept():
    before = run_limited(worker_tasks.pid, (), 30, "asking the pid")
    with pytest.raises(AbcError, match="bar 3 is too long"):
        run_limited(worker_tasks.refuse, ("bar 3 is too long",), 30, "checking")
    with pytest.raises(RenderError, match="Picky: 7: odd"):
        run_limited(worker_tasks.raise_picky, (), 30, "being picky")
    assert run_limited(worker_tasks.pid, (), 30, "asking the pid") == before
