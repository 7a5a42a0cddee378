"""The job queue: one job at a time per lane, positions, cancel, failure reasons, restart recovery, the job a tab
shows, and the time left."""
import json
import queue as queue_module
import threading

import pytest

from pipelines.errors import JobError, NotaGenError
from pipelines.service.jobs import JobQueue, Runner, time_left


class Gate:
    """A runner that waits for the test to open it (or for a stop request), then returns."""

    def __init__(self):
        self.started = threading.Event()
        self.release = threading.Event()
        self.order = []

    def __call__(self, ctx):
        self.order.append(ctx.params["n"])
        self.started.set()
        ctx.say("working")
        ctx.stream("text", {"0": "abc"})
        for i in range(200):
            if ctx.should_stop():
                return {"stopped_at": i}
            if self.release.wait(0.01):
                break
            ctx.progress(i, 200)
        return {"n": ctx.params["n"]}


def fail_plain(ctx):
    raise NotaGenError("model.pth: not a NotaGen checkpoint")


def fail_bug(ctx):
    raise ZeroDivisionError("division by zero")


@pytest.fixture
def gate():
    return Gate()


@pytest.fixture
def queue(tmp_path, gate):
    q = JobQueue(tmp_path / "jobs", {"gen": Runner("gpu", gate), "build": Runner("cpu", gate),
                                     "bad": Runner("gpu", fail_plain), "bug": Runner("gpu", fail_bug)})
    yield q
    gate.release.set()
    q.close()


def test_one_gpu_job_at_a_time_with_positions(queue, gate):
    first = queue.submit("gen", {"n": 1})
    assert gate.started.wait(5)
    second = queue.submit("gen", {"n": 2})
    third = queue.submit("gen", {"n": 3})
    assert queue.position(first.id) == 0
    assert (queue.position(second.id), queue.position(third.id)) == (1, 2)
    assert queue.get(second.id).state == "queued"
    assert queue.live(first.id) == {"text": {"0": "abc"}}
    gate.release.set()
    for job in (first, second, third):
        done = queue.wait(job.id, timeout=10)
        assert done.state == "done" and done.result == {"n": job.params["n"]}
    assert gate.order == [1, 2, 3]
    assert queue.position(first.id) == -1


def test_lanes_run_side_by_side(queue, gate):
    gpu = queue.submit("gen", {"n": 1})
    assert gate.started.wait(5)
    cpu = queue.submit("build", {"n": 2})
    assert queue.wait(cpu.id, timeout=0.5).state == "running"  # not waiting behind the GPU job
    assert queue.position(cpu.id) == 0
    gate.release.set()
    assert queue.wait(gpu.id, 10).state == "done" and queue.wait(cpu.id, 10).state == "done"


def test_cancel_waiting_and_running(queue, gate):
    running = queue.submit("gen", {"n": 1})
    assert gate.started.wait(5)
    waiting = queue.submit("gen", {"n": 2})
    assert queue.cancel(waiting.id).state == "cancelled"
    queue.cancel(running.id)
    done = queue.wait(running.id, timeout=10)
    assert done.state == "cancelled" and "stopped_at" in done.result and done.error == "cancelled by the user"
    assert gate.order == [1]  # the cancelled waiting job never ran


def test_failures_keep_their_reason(queue, tmp_path):
    bad = queue.wait(queue.submit("bad", {}).id, 10)
    assert bad.state == "failed" and bad.error == "model.pth: not a NotaGen checkpoint"
    bug = queue.wait(queue.submit("bug", {}).id, 10)
    assert bug.state == "failed" and bug.error == "ZeroDivisionError: division by zero"
    assert "Traceback" in (tmp_path / "jobs" / f"{bug.id}.error.txt").read_text(encoding="utf-8")
    with pytest.raises(JobError):
        queue.submit("nope", {})
    with pytest.raises(JobError):
        queue.submit("gen", {"x": object()})
    with pytest.raises(JobError):
        queue.get("missing")


def test_state_survives_a_restart(tmp_path, gate):
    folder = tmp_path / "jobs"
    q = JobQueue(folder, {"gen": Runner("gpu", gate)})
    finished = q.submit("gen", {"n": 0})
    gate.release.set()
    q.wait(finished.id, 10)
    gate.release.clear()
    gate.started.clear()
    running = q.submit("gen", {"n": 1})
    assert gate.started.wait(5)
    waiting = q.submit("gen", {"n": 2})
    # simulate a crash: the files say running / queued, as a killed process leaves them
    (folder / f"{running.id}.json").write_text(json.dumps({**q.get(running.id).to_dict(), "state": "running"}),
                                               encoding="utf-8")
    again = JobQueue(folder, {"gen": Runner("gpu", gate)})
    assert again.get(finished.id).state == "done" and again.get(finished.id).result == {"n": 0}
    crashed = again.get(running.id)
    assert crashed.state == "failed" and "stopped while this job was running" in crashed.error
    assert again.get(waiting.id).state == "cancelled" and "restarted" in again.get(waiting.id).error
    assert [j.id for j in again.list()][:3] == [waiting.id, running.id, finished.id]
    gate.release.set()
    q.close()
    again.close()


def test_a_service_registers_its_kind_once(tmp_path):
    queue = JobQueue(tmp_path / "jobs")
    with pytest.raises(JobError, match="no job kind 'late'"):
        queue.submit("late", {"n": 1})
    queue.register("late", Runner("cpu", lambda ctx: {"n": ctx.params["n"]}))
    with pytest.raises(JobError, match="'late' is already registered"):
        queue.register("late", Runner("gpu", fail_plain))
    job = queue.submit("late", {"n": 4})
    assert queue.wait(job.id, 10).result == {"n": 4}
    queue.close()


class Script:
    """A runner the test drives step by step: each `step(fn)` runs fn(ctx) in the job's thread and waits."""

    def __init__(self):
        self.steps = queue_module.Queue()
        self.done = queue_module.Queue()

    def __call__(self, ctx):
        while (fn := self.steps.get()) is not None:
            fn(ctx)
            self.done.put(True)
        return {}

    def step(self, fn):
        self.steps.put(fn)
        assert self.done.get(timeout=5)

    def end(self):
        self.steps.put(None)


def test_latest_is_the_running_job_else_the_next_in_line_else_the_newest(tmp_path):
    script = Script()
    q = JobQueue(tmp_path / "jobs", {"gen": Runner("gpu", script), "other": Runner("cpu", lambda ctx: {})})
    assert q.latest("gen") is None
    first = q.submit("gen", {"n": 1})
    script.step(lambda ctx: None)  # running now
    second = q.submit("gen", {"n": 2})
    q.wait(q.submit("other", {}).id, 5)
    assert q.latest("gen").id == first.id and q.latest("gen").state == "running"
    before = q.version
    script.end()
    assert q.wait(first.id, 5).state == "done"
    script.step(lambda ctx: None)  # the second one runs
    assert q.latest("gen").id == second.id
    assert q.version > before  # an end and a start are changes of state
    script.end()
    q.wait(second.id, 5)
    third = q.submit("gen", {"n": 3})
    q.cancel(third.id)
    assert q.latest("gen").id == third.id  # none unfinished: the newest, whatever its state
    q.close()


def test_the_time_left_follows_the_rate_of_the_current_progress_series(tmp_path):
    script = Script()
    q = JobQueue(tmp_path / "jobs", {"gen": Runner("gpu", script)})
    job = q.submit("gen", {})
    script.step(lambda ctx: (ctx.say("writing piece 1 of 2"), ctx.progress(0, 10)))
    started = q.get(job.id)
    assert started.stage == "writing piece of" and started.eta_s() is None  # nothing moved yet
    script.step(lambda ctx: ctx.progress(5, 10))
    now = started.series_started + 10.0
    assert q.get(job.id).eta_s(now) == pytest.approx(10.0)  # 5 in 10 s, 5 to go
    assert q.get(job.id).eta_s(started.series_started + 1.0) is None  # too early to tell
    script.step(lambda ctx: ctx.say("writing piece 2 of 2"))  # the same stage: the series goes on
    assert q.get(job.id).series_from == 0
    script.step(lambda ctx: ctx.progress(3, 10))  # back: a new series from 3
    assert q.get(job.id).series_from == 3
    script.step(lambda ctx: ctx.progress(4, 12))  # another total: a new series
    assert q.get(job.id).series_from == 4 and q.get(job.id).eta_s(now + 100) is None
    script.step(lambda ctx: ctx.progress(6, 12))
    script.step(lambda ctx: ctx.say("rendering", stage="rendering"))  # another stage: a new series
    assert q.get(job.id).series_from == 6 and q.get(job.id).stage == "rendering"
    script.end()
    assert q.wait(job.id, 5).eta_s(now + 100) is None  # finished
    q.close()


def test_time_left_in_words():
    assert time_left(4.6) == "about 5 s left"
    assert time_left(185.0) == "about 3 min 05 s left"
    assert time_left(7800.0) == "about 2 h 10 min left"
