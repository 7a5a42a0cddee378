"""The job layer: long work (generation, training, DPO, dataset builds) queued and run one at a time per lane.

A job is created with a kind and JSON parameters, waits in its lane's queue (the
"gpu" lane runs generation, training and DPO one after another, so one card never
holds two of them; the "cpu" lane runs dataset builds), runs in a worker thread, and
ends done, failed (with the reason) or cancelled. Cancelling is cooperative: the
runner's `should_stop()` turns True and the runner returns at its next check.

Each job's state is a JSON file in the workspace's jobs/ folder, written atomically
on every change of state (and at most once a second for progress), so a browser
refresh finds it again and a restarted studio still lists it. A job that was running
when the studio stopped is marked failed with that reason; one that was still waiting
is marked cancelled. Live data a runner streams (e.g. the text being generated) is
kept in memory only.

Progress comes with an estimate of the time left: a job remembers when its current
progress series began (a new series starts when the total changes, when the count goes
back, or when the runner's stage changes), and the rate since then gives `Job.eta_s`.
`latest(kind)` is the job a tab shows on a page load: the one running or next in line,
else the newest; `version` counts the changes of state, so a watcher can tell cheaply
whether anything started or ended.
"""
from __future__ import annotations

import json
import re
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from pipelines.errors import JobError, NotaGenError
from pipelines.files import atomic_write_text

STATES = ("queued", "running", "done", "failed", "cancelled")
FINISHED = ("done", "failed", "cancelled")
SAVE_INTERVAL_S = 1.0
ETA_AFTER_S = 2.0  # an estimate of the time left needs this much of a progress series
_NUMBERS = re.compile(r"\d+(?:[.,]\d+)*")


def stage_of(message: str) -> str:
    """A status line's stage: the line without its numbers ("rendering piece 2 of 3" -> "rendering piece of")."""
    return " ".join(_NUMBERS.sub(" ", message).split())


def duration(seconds: float) -> str:
    """"about 5 s", "about 3 min 05 s", "about 2 h 10 min"."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"about {s} s"
    if s < 3600:
        return f"about {s // 60} min {s % 60:02d} s"
    return f"about {s // 3600} h {s % 3600 // 60:02d} min"


def time_left(seconds: float) -> str:
    """"about 5 s left", "about 3 min 05 s left", "about 2 h 10 min left"."""
    return f"{duration(seconds)} left"


@dataclass
class Job:
    id: str
    kind: str
    lane: str
    params: dict
    title: str = ""
    state: str = "queued"
    created: float = 0.0
    started: float | None = None
    finished: float | None = None
    done: int = 0  # progress, in the runner's own units
    total: int = 0
    message: str = ""  # the latest status line
    stage: str = ""  # what the runner is doing, without counts (`stage_of` the message, or as the runner named it)
    series_started: float | None = None  # when the current progress series began (wall clock)
    series_from: int = 0  # `done` when it began
    error: str = ""  # why it failed or was cancelled
    result: dict = field(default_factory=dict)
    cancel_requested: bool = False

    @property
    def is_finished(self) -> bool:
        return self.state in FINISHED

    def eta_s(self, now: float | None = None) -> float | None:
        """Seconds left at the rate of the current progress series; None until it has run a while and moved."""
        if self.state != "running" or self.total <= 0 or self.series_started is None:
            return None
        elapsed = (time.time() if now is None else now) - self.series_started
        moved = self.done - self.series_from
        if moved <= 0 or elapsed < ETA_AFTER_S:
            return None
        return max(0, self.total - self.done) * elapsed / moved

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Job":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


class JobContext:
    """What a runner gets: its job's parameters, and callbacks for progress, messages, live data and stop."""

    def __init__(self, queue: "JobQueue", job: Job):
        self._queue = queue
        self.job_id = job.id
        self.params = dict(job.params)

    def progress(self, done: int, total: int) -> None:
        self._queue._update(self.job_id, done=int(done), total=int(total))

    def say(self, message: str, stage: str | None = None) -> None:
        """The job's status line; `stage` names what it does (default: the line without its numbers),
        and a new stage starts a new progress series."""
        message = str(message)
        self._queue._update(self.job_id, message=message, stage=stage_of(message) if stage is None else stage)

    def stream(self, key: str, value) -> None:
        """Live data for watchers (not saved): e.g. stream("text", {row: text})."""
        with self._queue._lock:
            self._queue._live.setdefault(self.job_id, {})[key] = value

    def should_stop(self) -> bool:
        with self._queue._lock:
            return self._queue._jobs[self.job_id].cancel_requested


@dataclass(frozen=True)
class Runner:
    lane: str  # "gpu" or "cpu": jobs of one lane run one at a time
    run: Callable[[JobContext], dict]  # returns the job's result (JSON-able)


class JobQueue:
    def __init__(self, folder: str | Path, runners: dict[str, Runner] | None = None):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.runners = dict(runners or {})
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._jobs: dict[str, Job] = {}
        self._live: dict[str, dict] = {}
        self._saved_at: dict[str, float] = {}
        self._workers: dict[str, threading.Thread] = {}
        self._closing = False
        self._version = 0  # changes of state: submit, start, end, cancel
        self._recover()

    # -- persistence
    def _path(self, job_id: str) -> Path:
        return self.folder / f"{job_id}.json"

    def _save(self, job: Job) -> None:
        atomic_write_text(self._path(job.id), json.dumps(job.to_dict(), indent=1, sort_keys=True) + "\n")
        self._saved_at[job.id] = time.monotonic()

    def _recover(self) -> None:
        """Load the jobs of earlier sessions; those cut short by a stop or crash are closed with a reason."""
        for path in sorted(self.folder.glob("*.json")):
            try:
                job = Job.from_dict(json.loads(path.read_text(encoding="utf-8")))
            except (json.JSONDecodeError, TypeError, UnicodeDecodeError) as e:
                raise JobError(f"{path}: not a job file ({e}); move it out of the jobs folder") from None
            if job.state == "running":
                job.state, job.finished = "failed", time.time()
                job.error = "the studio stopped while this job was running (a crash or a restart); start it again"
                self._save(job)
            elif job.state == "queued":
                job.state, job.finished = "cancelled", time.time()
                job.error = "the studio restarted before this job started; start it again"
                self._save(job)
            self._jobs[job.id] = job

    # -- the public side
    def register(self, kind: str, runner: Runner) -> None:
        """Add a job kind (a service registers its runner when the studio starts)."""
        if kind in self.runners:
            raise JobError(f"job kind {kind!r} is already registered")
        self.runners[kind] = runner

    def submit(self, kind: str, params: dict, title: str = "", unique: str | None = None) -> Job:
        """Queue a job; it starts when its lane is free. Returns a copy of its state.

        `unique`: a parameter no two unfinished jobs of this kind may share (a dataset's name:
        a double click must not start a second build of it); such a submit is refused.
        """
        if kind not in self.runners:
            raise JobError(f"no job kind {kind!r}; known: {', '.join(sorted(self.runners))}")
        try:
            json.dumps(params)
        except TypeError as e:
            raise JobError(f"the parameters of a {kind} job must be JSON data ({e})") from None
        lane = self.runners[kind].lane
        job = Job(id=f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}", kind=kind, lane=lane,
                  params=params, title=title or kind, created=time.time(), message="waiting")
        with self._lock:
            if self._closing:
                raise JobError("the studio is shutting down; no new jobs")
            if unique is not None:
                for other in self._jobs.values():
                    if other.kind == kind and not other.is_finished and other.params.get(unique) == params.get(unique):
                        raise JobError(f"{other.title!r} is already {other.state} (job {other.id}); "
                                       "wait for it to finish or cancel it first")
            self._jobs[job.id] = job
            self._save(job)
            self._version += 1
            self._start_worker(lane)
            self._changed.notify_all()
            return Job.from_dict(job.to_dict())

    def get(self, job_id: str) -> Job:
        with self._lock:
            return Job.from_dict(self._find(job_id).to_dict())

    def live(self, job_id: str) -> dict:
        with self._lock:
            self._find(job_id)
            return dict(self._live.get(job_id, {}))

    def position(self, job_id: str) -> int:
        """0: running; n >= 1: n-th in line for its lane (1 = next); -1: finished."""
        with self._lock:
            job = self._find(job_id)
            if job.state == "running":
                return 0
            if job.state != "queued":
                return -1
            waiting = sorted((j for j in self._jobs.values() if j.lane == job.lane and j.state == "queued"),
                             key=lambda j: (j.created, j.id))
            return 1 + [j.id for j in waiting].index(job.id)

    def latest(self, kind: str) -> Job | None:
        """The job of `kind` a tab shows: the one running, else the next in line, else the newest; None if none."""
        with self._lock:
            jobs = [j for j in self._jobs.values() if j.kind == kind]
            if not jobs:
                return None
            running = [j for j in jobs if j.state == "running"]
            queued = sorted((j for j in jobs if j.state == "queued"), key=lambda j: (j.created, j.id))
            job = (running or queued or [max(jobs, key=lambda j: (j.created, j.id))])[0]
            return Job.from_dict(job.to_dict())

    @property
    def version(self) -> int:
        """A count of the changes of state (a job submitted, started, ended or asked to stop)."""
        with self._lock:
            return self._version

    def list(self, limit: int = 50) -> list[Job]:
        """Newest first."""
        with self._lock:
            jobs = sorted(self._jobs.values(), key=lambda j: (j.created, j.id), reverse=True)[:limit]
            return [Job.from_dict(j.to_dict()) for j in jobs]

    def cancel(self, job_id: str) -> Job:
        """A waiting job is cancelled at once; a running one is asked to stop at its next check."""
        with self._lock:
            job = self._find(job_id)
            if job.state == "queued":
                job.state, job.finished, job.error, job.message = "cancelled", time.time(), "cancelled by the user", ""
                self._save(job)
            elif job.state == "running":
                job.cancel_requested = True
                job.message = "stopping..."
                self._save(job)
            self._version += 1
            self._changed.notify_all()
            return Job.from_dict(job.to_dict())

    def wait(self, job_id: str, timeout: float | None = None) -> Job:
        """Block until the job has finished (or `timeout` seconds passed); returns its state."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while not self._find(job_id).is_finished:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                self._changed.wait(timeout=left if left is not None else 1.0)
            return Job.from_dict(self._find(job_id).to_dict())

    def close(self, timeout: float = 30.0) -> None:
        """Stop taking jobs, ask running ones to stop, and wait for the workers."""
        with self._lock:
            self._closing = True
            for job in self._jobs.values():
                if job.state == "running":
                    job.cancel_requested = True
            self._changed.notify_all()
            workers = list(self._workers.values())
        for worker in workers:
            worker.join(timeout)

    # -- the worker side
    def _find(self, job_id: str) -> Job:
        job = self._jobs.get(str(job_id))
        if job is None:
            raise JobError(f"no job {job_id!r}")
        return job

    def _update(self, job_id: str, **changes) -> None:
        with self._lock:
            job = self._find(job_id)
            new_series = (job.series_started is None or changes.get("total", job.total) != job.total
                          or changes.get("done", job.done) < job.done or changes.get("stage", job.stage) != job.stage)
            for key, value in changes.items():
                setattr(job, key, value)
            if new_series:
                job.series_started, job.series_from = time.time(), job.done
            if time.monotonic() - self._saved_at.get(job_id, 0.0) >= SAVE_INTERVAL_S:
                self._save(job)
            self._changed.notify_all()

    def _start_worker(self, lane: str) -> None:
        worker = self._workers.get(lane)
        if worker is None or not worker.is_alive():
            worker = threading.Thread(target=self._work, args=(lane,), name=f"jobs-{lane}", daemon=True)
            self._workers[lane] = worker
            worker.start()

    def _next(self, lane: str) -> Job | None:
        with self._lock:
            while True:
                waiting = sorted((j for j in self._jobs.values() if j.lane == lane and j.state == "queued"),
                                 key=lambda j: (j.created, j.id))
                if self._closing:
                    return None
                if waiting:
                    job = waiting[0]
                    job.state, job.started, job.message = "running", time.time(), "starting"
                    self._save(job)
                    self._version += 1
                    self._changed.notify_all()
                    return job
                self._changed.wait()

    def _work(self, lane: str) -> None:
        while (job := self._next(lane)) is not None:
            self._run(job)

    def _run(self, job: Job) -> None:
        context = JobContext(self, job)
        state, error, result = "done", "", {}
        try:
            result = self.runners[job.kind].run(context) or {}
            json.dumps(result)
        except NotaGenError as e:
            state, error = "failed", str(e)
        except Exception as e:  # a bug or a library failure: the job fails with the reason, the studio goes on
            state, error = "failed", f"{type(e).__name__}: {e}"
            log = self.folder / f"{job.id}.error.txt"
            atomic_write_text(log, traceback.format_exc())
        with self._lock:
            if state == "done" and job.cancel_requested:
                state, error = "cancelled", "cancelled by the user"
            job.state, job.error, job.result, job.finished = state, error, result, time.time()
            job.message = {"done": "finished", "failed": "failed", "cancelled": "cancelled"}[state]
            self._save(job)
            self._version += 1
            self._changed.notify_all()
