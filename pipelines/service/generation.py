"""The generation service: a Generate request as a checked spec, its job (generate, render, audio, export,
one library row per piece), uploaded scores read or previewed, and replaying a library piece.

The sampling and limit fields mirror `SamplingConfig` and `GenerationLimits`, the one home
of their defaults and ranges; `defaults` sizes the limits to the device (on a CPU, a request
that ends in about a minute) and `estimate` says how long a request will take, both from
the speed the engine last showed on this device (a job's own record) or a documented fallback.

While a job runs it streams, for watchers: the text of each piece (`texts`, as a musician
reads it, and `raw`), why the engine went back (`notes`: a header written again, a bar drawn
again), and its progress (bars written against the bars each piece planned); `sketch` engraves
each piece so far, at most every few seconds.
"""
from __future__ import annotations

import hashlib
import re
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from pipelines.abc.postprocess import postprocess_partial
from pipelines.abc.prompts import Prompt
from pipelines.abc.tokenizer import STREAM_PREFIX, readable
from pipelines.errors import AbcError, NotaGenError, SettingError, WorkspaceError
from pipelines.fields import same_as
from pipelines.files import atomic_write_text
from pipelines.generation.continuation import (
    MAX_ABC_BYTES,
    SCORE_SUFFIXES,
    continuation_prefix,
    judge_continuation,
    read_score,
    score_lines,
)
from pipelines.generation.engine import GenerationRequest, MoveEvent
from pipelines.generation.header import HeaderControls, LengthFit, length_fit
from pipelines.generation.options import GenerationLimits, SamplingConfig
from pipelines.generation.piece import MoveKind
from pipelines.generation.variation import bar_prefix, rewrite_bar
from pipelines.model.network import count_parameters
from pipelines.model.registry import validate_prompt
from pipelines.model.runtime import pick_runtime
from pipelines.render.audio import AudioConfig, render_audio, synthesize
from pipelines.render.export import export_piece
from pipelines.render.score import RenderConfig, engrave_piece, render_abc
from pipelines.render.worker import warm_up as warm_up_renderer
from pipelines.service.jobs import Job, JobContext, JobQueue, Runner
from pipelines.service.library import Generation, Library
from pipelines.service.models import ModelService
from pipelines.service.settings import Settings
from pipelines.service.specs import JobResult, check_spec, from_params
from pipelines.service.workspace import Workspace, inside

KIND = "generate"
CONTINUE_UPLOADS = SCORE_SUFFIXES
MAX_SEED = 2**62
NOTES_KEPT = 4  # the engine's latest notes a watcher sees
SKETCH_EVERY_S = 3.0  # a piece's score so far is engraved again at most this often (and only with new lines)
# Sizing a request to the device. On a CPU the default request should end in about CPU_TARGET_S:
# its patch limit is what the engine writes in that time at the speed it last showed on this
# device (a finished job's own record), rounded, and never below CPU_MIN_PATCHES.
CPU_TARGET_S = 60.0
CPU_MIN_PATCHES = 64
# Fallback speeds, before any job ran with the model on this device: seconds per patch of one
# piece (a CPU spends them per piece of a batch, a GPU per step of the whole batch). CPU: a fixed
# cost plus a cost per million parameters. The demo model (7.9 M) wrote 6-10 patches/s of a Bach
# chorale on one thread of this project's shared 2-core test machine (0.10-0.16 s a patch, the
# bar checks of the redraw policy included); the per-parameter term is a rough guess for larger
# models. GPU: an H100 writes a batch-1 patch of NotaGen-X in about 3 ms (benchmarks/README.md);
# setup and host work make that about 10 ms. The studio says an estimate from these is a first guess.
CPU_S_PER_PATCH = 0.15
CPU_S_PER_PATCH_PER_M_PARAMS = 0.004
GPU_S_PER_PATCH = 0.01
TYPICAL_PATCHES = 200  # a piece with no patch limit, before the model showed its own length here
# Variations side by side stand in columns half as wide as a piece alone: their pages on screen are engraved
# this wide (Verovio units; A4 is 2100), at the same staff size and only as tall as their music, so their notes
# read as a single piece's do. Their PDF keeps A4 pages.
COLUMN_PAGE_WIDTH = 1000


@dataclass
class GenerationSpec:
    """One Generate click: the model, the prompt, how many pieces, sampling, limits, the meter, key, tempo
    and length (each "" / None: the model's choice), and a piece to continue: from its first `keep_lines`
    lines on, or with only its bar `bar` written again (`count` candidates, ranked). `parent_id`: the library
    piece the continued one is (its variations and rewritten bars name it)."""

    model: str
    period: str
    composer: str
    instrumentation: str
    count: int = 1
    seed: int = 0  # piece i uses seed + i
    top_k: int = same_as(SamplingConfig, "top_k")
    top_p: float = same_as(SamplingConfig, "top_p")
    temperature: float = same_as(SamplingConfig, "temperature")
    max_patches: int = same_as(GenerationLimits, "max_patches")
    max_seconds: float = same_as(GenerationLimits, "max_seconds")
    bar_retries: int = same_as(GenerationLimits, "bar_retries")
    continue_abc: str = ""  # a piece to continue (standard or interleaved ABC); "" for a new piece
    continue_name: str = ""
    keep_lines: int = 0  # of the piece to continue; 0: all
    add_lines: int = 8
    bar: int = 0  # write only this bar of the piece to continue again, every other bar kept; 0: continue it
    parent_id: int | None = None
    meter: str = same_as(HeaderControls, "meter")
    key: str = same_as(HeaderControls, "key")
    tempo: int | None = same_as(HeaderControls, "tempo")
    bars: int | None = same_as(HeaderControls, "bars")

    def __post_init__(self):
        for name in ("model", "period", "composer", "instrumentation", "continue_abc", "continue_name", "meter", "key"):
            setattr(self, name, getattr(self, name) or "")
        check_spec(self)
        self.header()  # a meter or key that is not one is refused here, with its own message
        if self.count < 1:
            raise SettingError(f"pieces per request must be at least 1, not {self.count}")
        if not 0 <= self.seed < MAX_SEED:
            raise SettingError(f"the seed must be a whole number from 0 to 2**62, not {self.seed}")
        if self.keep_lines < 0 or self.add_lines < 1:
            raise SettingError("keep 0 or more of the piece's lines (0: all), and add at least 1")
        if self.bar < 0:
            raise SettingError(f"the bar to write again is a bar number (0: none), not {self.bar}")
        if len(self.continue_abc.encode("utf-8")) > MAX_ABC_BYTES:
            raise AbcError(f"the piece to continue is over {MAX_ABC_BYTES // 2**20} MB of ABC")

    @property
    def prompt(self) -> Prompt:
        return Prompt(self.period, self.composer, self.instrumentation)

    def sampling(self) -> SamplingConfig:
        return SamplingConfig(self.top_k, self.top_p, self.temperature)

    def limits(self) -> GenerationLimits:
        return GenerationLimits(max_patches=self.max_patches, max_seconds=self.max_seconds,
                                bar_retries=self.bar_retries)

    def header(self) -> HeaderControls:
        return HeaderControls(meter=self.meter, key=self.key, tempo=self.tempo, bars=self.bars)

    def prefix(self) -> str:
        """The continued piece in the training format ("" for a new piece); AbcError when it cannot be read,
        SettingError when a chosen meter, key, tempo or length is not the piece's own."""
        if not self.continue_abc:
            if self.bar:
                raise SettingError(f"choose the score whose bar {self.bar} is to be written again (or set that "
                                   "bar to 0 for a new piece)")
            return ""
        name = self.continue_name or "the piece to continue"
        try:
            if self.bar:  # the piece up to the bar, as the bar's candidates continue it
                if self.keep_lines:
                    raise SettingError(f"writing bar {self.bar} again keeps every other bar: set the lines to keep "
                                       "to 0")
                prefix = bar_prefix(self.continue_abc, self.prompt, self.bar)
            else:
                prefix = continuation_prefix(self.continue_abc, self.prompt, keep_lines=self.keep_lines,
                                             add_lines=self.add_lines)
        except AbcError as e:
            raise AbcError(f"{name}: {e}") from None
        try:
            self.header().check_continuation(prefix)
        except SettingError as e:
            raise SettingError(f"{name}: {e}") from None
        return prefix

    @property
    def side_by_side(self) -> bool:
        """Several pieces from one score (variations, or a bar's candidates): shown side by side to compare."""
        return bool(self.continue_abc) and self.count > 1

    def parameters(self) -> dict:
        """What the library keeps to replay a piece (the seed is stored per piece)."""
        data = asdict(self)
        for key in ("model", "period", "composer", "instrumentation", "seed", "continue_abc", "parent_id"):
            data.pop(key)
        return data


@dataclass
class PieceFiles:
    """A rendered piece: its exports, its score pages, the notes on its score, or why it could not be made."""

    files: dict[str, str] = field(default_factory=dict)  # kind -> workspace-relative path
    svg_pages: list[str] = field(default_factory=list)  # workspace-relative .svg paths
    problems: list[str] = field(default_factory=list)
    error: str = ""


@dataclass(frozen=True)
class PieceResult:
    id: int  # the library row
    seed: int
    status: str  # ok | limit | cancelled | invalid | unchanged (a continuation the model ended at once)
    reason: str
    chars: int
    render_error: str
    problems: list[str]
    patches: int = 0  # written, redrawn ones included


@dataclass(frozen=True)
class GenerationResult(JobResult):
    pieces: list[PieceResult]
    warning: str  # about the prompt (a model without a vocabulary) or a meter or key it never saw, "" when none
    model: str
    prompt: str
    device: str = ""  # the engine's speed on it, for estimates: `seconds` for the batch's `steps` patches
    seconds: float = 0.0
    steps: int = 0

    @property
    def complete(self) -> int:
        return sum(1 for p in self.pieces if p.status == "ok")

    @classmethod
    def from_dict(cls, data: dict) -> "GenerationResult":
        return cls(pieces=[PieceResult(**p) for p in data.get("pieces", [])], warning=data.get("warning", ""),
                   model=data.get("model", ""), prompt=data.get("prompt", ""), device=data.get("device", ""),
                   seconds=data.get("seconds", 0.0), steps=data.get("steps", 0))


@dataclass(frozen=True)
class LengthRecord:
    """How close a model's finished pieces asked for a length ("length in bars") landed here, one `LengthFit`
    per length asked."""

    fits: tuple[LengthFit, ...]
    KEEPS_COUNT = 0.5  # the share of pieces within a quarter of the asked length above which a model keeps count

    @property
    def pieces(self) -> int:
        return sum(len(f.written) for f in self.fits)

    def within(self, share: float) -> float:
        """Share of the pieces within `share` (0.25: a quarter) of the bars asked for."""
        return sum(f.within(share) * len(f.written) for f in self.fits) / self.pieces if self.pieces else 0.0

    @property
    def mean_error(self) -> float:
        """Mean bars written minus asked (negative: short)."""
        return sum(f.mean_error * len(f.written) for f in self.fits) / self.pieces if self.pieces else 0.0

    @property
    def keeps_count(self) -> bool:
        return self.within(0.25) >= self.KEEPS_COUNT


@dataclass(frozen=True)
class Estimate:
    """How long a request will take on this device, and what that rests on."""

    seconds: float
    device: str  # "cpu", "cuda", ...
    bound: str  # what ends the pieces in the estimate: "patch limit", "time limit" or "typical length"
    measured: bool  # from this device's last job with the model (else the documented fallback)

    def words(self) -> str:
        """"about 1 min on this CPU (at most 300 patches a piece)"."""
        s = max(1, round(self.seconds))
        when = f"about {s} s" if s < 60 else f"about {round(s / 60)} min" if s < 3600 else f"about {s / 3600:.1f} h"
        where = "on this CPU" if self.device == "cpu" else "on this GPU"
        basis = "" if self.measured else ", a first guess until a piece has been written here"
        return f"{when} {where} ({self.bound}{basis})"


@dataclass(frozen=True)
class Sketch:
    """A piece being written, engraved as far as it goes: `lines` whole tune-body lines."""

    row: int
    lines: int
    svg_pages: list[str]
    error: str = ""


@dataclass(frozen=True)
class _Engraved:
    """A piece's last engraving while it is written: at how many newlines of its text, when, how long
    until the next may be made, and what it showed."""

    lines: int
    when: float
    wait: float
    sketch: Sketch | None


def move_note(row: int, event: MoveEvent) -> str:
    """Why the engine went back in a piece, as a musician reads it ("piece 2: bar 14's voices did not line
    up (voices differ in length); drawing it again")."""
    piece, times, why = f"piece {row + 1}", ordinal(event.count), short_reason(event.reason)
    if event.kind is MoveKind.HEADER:
        return f"{piece}: the header it wrote cannot make a score ({why}); starting again ({times} time)"
    if event.kind is MoveKind.RESTART:
        return (f"{piece}: bar {event.line}'s voices still did not line up ({why}); starting the piece again "
                f"({times} time)")
    if event.kind is MoveKind.LINE:
        again = "" if event.count == 1 else f" ({times} time)"
        return f"{piece}: bar {event.line}'s voices did not line up ({why}); drawing it again{again}"
    if event.to_line == event.line:
        return f"{piece}: it ended on bar {event.line}, which does not close ({why}); drawing it again"
    return f"{piece}: bar {event.line}'s voices still did not line up ({why}); going back to bar {event.to_line}"


def short_reason(reason: str) -> str:
    """The gist of a check's finding: a line is checked alone, so its "bar 1: " goes, and the details in
    brackets (each voice's length, the text that could not be timed) too."""
    reason = re.sub(r"^bar \d+: ", "", reason.strip())
    return reason.split(" (")[0].split(" ('")[0].strip() or "no reason given"


class MoveNotes:
    """The latest notes of why the engine went back; the same bar drawn again once more replaces its note."""

    def __init__(self, kept: int = NOTES_KEPT):
        self.kept = kept
        self.notes: list[tuple[tuple, str]] = []  # (what it is about, the note)

    def add(self, row: int, event: MoveEvent) -> list[str]:
        """Note `event` of piece `row`; returns the notes to show, newest last."""
        about = (row, event.kind, event.line)
        if self.notes and self.notes[-1][0] == about:
            self.notes.pop()
        self.notes = [*self.notes, (about, move_note(row, event))][-self.kept:]
        return [note for _, note in self.notes]


def ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


class BatchProgress:
    """A batch's progress: per piece, the tune-body lines (bars) written against those it planned
    (the first line's `[r:i/j]` says i + j + 1), the furthest since it last began again; or, while a
    piece has no plan yet, the patches written against the patch limit, when there is one."""

    def __init__(self, pieces: int, max_patches: int):
        self.max_patches = max_patches
        self.patches = [0] * pieces
        self.planned: list[int | None] = [None] * pieces
        self.lines = [0] * pieces

    def patch(self, row: int, text: str) -> None:
        self.patches[row] += 1
        body = [line for line in text.split("\n") if line.startswith(("[r:", "[V:"))]
        if not body:
            self.planned[row] = None
            return
        first = STREAM_PREFIX.match(body[0])
        self.planned[row] = (sum(map(int, first.group(0)[3:-1].split("/"))) + 1) if first else None
        whole = len(body) - (not text.endswith("\n"))
        self.lines[row] = max(self.lines[row], whole)

    def restarted(self, row: int) -> None:
        self.lines[row] = 0

    def counts(self) -> tuple[int, int, str]:
        """(done, total, unit): bars where every piece has its plan, else patches of the limit, else nothing."""
        if all(p is not None for p in self.planned):
            return sum(min(n, p) for n, p in zip(self.lines, self.planned)), sum(self.planned), "bars"
        if self.max_patches:
            return sum(min(n, self.max_patches) for n in self.patches), self.max_patches * len(self.patches), "patches"
        return 0, 0, ""


class GenerationService:
    def __init__(self, workspace: Workspace, settings: Settings, jobs: JobQueue, models: ModelService,
                 library: Library):
        self.workspace = workspace
        self.settings = settings
        self.jobs = jobs
        self.models = models
        self.library = library
        self._sketches: dict[tuple[str, int], _Engraved] = {}  # (job, row) -> its last engraving
        self._sketch_lock = threading.Lock()
        jobs.register(KIND, Runner("gpu", self.run))

    def submit(self, spec: GenerationSpec) -> Job:
        """Check a Generate request here (the browser is not trusted), then queue it."""
        self.models.path(spec.model)
        if spec.count > self.settings.max_pieces:
            raise SettingError(f"pieces per request must be 1 to {self.settings.max_pieces}, not {spec.count}")
        spec.prefix()
        if spec.parent_id is not None:
            self.library.get(spec.parent_id)  # a piece that is there
        p, pieces = spec.prompt, f"{spec.count} piece{'s' if spec.count > 1 else ''}"
        doing = (f"write bar {spec.bar} again ({spec.count} candidate{'s' if spec.count > 1 else ''})" if spec.bar
                 else f"generate {pieces}{' continuing a score' if spec.continue_abc else ''}")
        title = f"{doing}: " + " / ".join((p.period, p.composer, p.instrumentation))
        return self.jobs.submit(KIND, asdict(spec), title)

    @staticmethod
    def result(job: Job) -> GenerationResult:
        return GenerationResult.from_dict(job.result)

    def run(self, ctx: JobContext) -> dict:
        spec = from_params(GenerationSpec, ctx.params)
        path = self.models.path(spec.model)
        prompt = spec.prompt
        warm_up_renderer(engrave_piece, synthesize)  # its process imports Verovio while the model loads and writes
        ctx.say(f"loading {path.name}")
        engine = self.models.slot.get(path, self.settings.device, self.settings.dtype)
        prefix, header = spec.prefix(), spec.header()
        unseen = "" if prefix else self.models.header_choices(spec.model, prompt).unseen(header, prompt.line)
        warning = "; ".join(w for w in (validate_prompt(engine.card, prompt), unseen) if w)
        requests = [GenerationRequest(prompt=prompt, seed=spec.seed + i, prefix=prefix, header=header)
                    for i in range(spec.count)]
        texts: dict[int, str] = {}
        raw: dict[int, str] = {}
        notes = MoveNotes()
        progress = BatchProgress(spec.count, spec.max_patches)
        many = spec.count > 1
        what = f"writing {spec.count} pieces" if many else "writing the piece"
        units = {"bars": f"{what}: bars of the planned length{'s' if many else ''}",
                 "patches": f"{what}: patches of the {spec.max_patches}-patch limit", "": what}

        def on_patch(row: int, text: str) -> None:
            texts[row], raw[row] = readable(text), text  # the raw text is kept with the piece
            ctx.stream("texts", dict(texts))
            ctx.stream("raw", dict(raw))
            if spec.bar:  # a candidate is one bar: no count to show
                return
            progress.patch(row, text)
            done, total, unit = progress.counts()
            ctx.say(units[unit], stage=f"writing {unit}")
            ctx.progress(done, total)

        def on_move(row: int, event: MoveEvent) -> None:
            if event.kind in (MoveKind.HEADER, MoveKind.RESTART):
                progress.restarted(row)
            ctx.stream("notes", notes.add(row, event))

        if spec.bar:
            what = f"writing {spec.count} candidate{'s' if many else ''} for bar {spec.bar}"
        ctx.say(f"{what} on {engine.runtime.device}", stage="writing")
        if spec.bar:  # candidates for one bar, best first: each a whole piece with its rank and score
            found = rewrite_bar(engine, spec.continue_abc, prompt, spec.bar, spec.count, spec.seed, spec.sampling(),
                                spec.bar_retries, on_patch=on_patch, should_stop=ctx.should_stop)
            written = [(replace(c.piece, abc=c.abc, raw=c.text, status="ok" if c.abc is not None else "invalid",
                                reason="" if c.abc is not None else "the piece with the new bar could not be read"),
                        {"rank": rank, "following_logprob": round(c.following_logprob, 4)})
                       for rank, c in enumerate(found, 1)]
        else:
            pieces = engine.generate(requests, spec.sampling(), spec.limits(), on_patch=on_patch,
                                     should_stop=ctx.should_stop, on_move=on_move)
            written = [(judge_continuation(piece), {}) for piece in pieces]
        results = []
        folder = self.exports / ctx.job_id
        for n, (piece, extra) in enumerate(written, 1):
            ctx.say(f"rendering piece {n} of {len(written)}", stage="rendering")
            ctx.progress(n - 1, len(written))
            stem = prompt.file_stem(piece.request.seed) + (f"-bar{spec.bar}-{extra['rank']}" if spec.bar else "")
            rendered = (self.render_piece(piece.abc, folder, stem, ctx.should_stop, column=spec.side_by_side)
                        if piece.abc is not None
                        else PieceFiles(error="not rendered: " + (piece.reason or piece.status)))
            raw_path = atomic_write_text(folder / f"{stem}.raw.abc", piece.raw)
            rendered.files["raw"] = self.workspace.relative(raw_path)
            entry_id = self.library.add(Generation(
                model=spec.model, prompt=prompt.line, period=prompt.period, composer=prompt.composer,
                instrumentation=prompt.instrumentation, seed=piece.request.seed, status=piece.status,
                reason=piece.reason, raw=piece.raw, abc=piece.abc, parameters={**spec.parameters(), **extra},
                files={**rendered.files, "svg": rendered.svg_pages}, seconds=round(piece.seconds, 3),
                job_id=ctx.job_id, parent_id=spec.parent_id))
            results.append(PieceResult(id=entry_id, seed=piece.request.seed, status=piece.status,
                                       reason=piece.reason, chars=piece.chars, render_error=rendered.error,
                                       problems=list(rendered.problems), patches=piece.patches))
        ctx.progress(len(written), len(written))
        if engine.fallback:  # a fast path failed its check at load: the pieces are right, but slower to come
            warning = "; ".join(w for w in (warning, engine.fallback) if w)
        seconds = max((p.seconds for p, _ in written), default=0.0)  # the batch's: every piece carries it
        steps = max((p.patches for p, _ in written), default=0)
        return GenerationResult(results, warning, spec.model, prompt.line, device=engine.runtime.device.type,
                                seconds=round(seconds, 3), steps=steps).to_dict()

    # -- watching a job
    def notes(self, job_id: str) -> list[str]:
        """The engine's latest notes about a running job (why it wrote a header or drew a bar again)."""
        return list(self.jobs.live(job_id).get("notes", []))

    def sketch(self, job_id: str) -> list[Sketch]:
        """Each piece of a running job engraved so far (its whole lines whose voices line up). A piece is
        engraved again once it has new lines, at most every SKETCH_EVERY_S (or twice as long as its last
        engraving took, where that is longer); watchers share the engravings."""
        raw = self.jobs.live(job_id).get("raw", {})
        sketches = []
        with self._sketch_lock:
            for key in [k for k in self._sketches if k[0] != job_id]:  # an earlier job's: no longer watched
                del self._sketches[key]
            for row, text in sorted(raw.items()):
                key, lines = (job_id, row), text.count("\n")
                last = self._sketches.get(key)
                if last is not None and (last.lines == lines or time.monotonic() - last.when < last.wait):
                    if last.sketch is not None:
                        sketches.append(last.sketch)
                    continue
                started = time.monotonic()
                sketch = self._engrave(row, text, last.sketch if last else None)
                took = time.monotonic() - started
                self._sketches[key] = _Engraved(lines, time.monotonic(), max(SKETCH_EVERY_S, 2 * took), sketch)
                if sketch is not None:
                    sketches.append(sketch)
        return sketches

    @staticmethod
    def _engrave(row: int, text: str, last: Sketch | None) -> Sketch | None:
        """A piece's text so far engraved (None before its first whole line); where it cannot be engraved
        now, the last engraving with the reason."""
        abc = postprocess_partial(text)
        if abc is None:
            return last
        bars = sum(1 for line in abc.split("\n") if line.startswith("[V:"))
        try:
            sketch = RenderConfig(pdf=False, fit_height=True, follow=False)  # no audio to follow yet
            return Sketch(row, bars, render_abc(abc, sketch).svg_pages)
        except NotaGenError as e:
            return Sketch(row, last.lines if last else 0, last.svg_pages if last else [], f"not engraved: {e}")

    # -- sizing a request to the device
    def device(self) -> str:
        """The device type generation runs on: "cpu", "cuda" or "mps"."""
        return pick_runtime(self.settings.device, self.settings.dtype).device.type

    def written_jobs(self) -> list[Job]:
        """The newest finished generation jobs that wrote whole pieces (a bar's candidates are one bar each, and
        ranked after: they say nothing of the speed or length of a piece), newest first."""
        return [job for job in self.jobs.list(200)
                if job.kind == KIND and job.state == "done" and not job.params.get("bar")]

    def speed(self, model: str, device: str | None = None) -> tuple[float, int, bool]:
        """(seconds per patch step, the batch it was measured at, measured?) of `model` on this device: from
        the newest finished job that wrote with it here, else the documented fallback."""
        device = device or self.device()
        for job in self.written_jobs():
            r = self.result(job)
            if r.model == model and r.device == device and r.steps > 0 and r.seconds > 0:
                return r.seconds / r.steps, max(1, len(r.pieces)), True
        if device == "cpu":
            millions = count_parameters(self.models.config(model)) / 1e6
            return CPU_S_PER_PATCH + CPU_S_PER_PATCH_PER_M_PARAMS * millions, 1, False
        return GPU_S_PER_PATCH, 1, False

    def length_record(self, model: str, newest: int = 500) -> LengthRecord:
        """How close `model`'s newest finished new pieces (not continuations) asked for a length landed: the
        bars their tune bodies have against the bars asked."""
        asked: dict[int, list[str]] = {}
        for entry in self.library.search(model=model, status="ok", limit=newest):
            bars = entry.parameters.get("bars")
            if bars and entry.raw and not entry.parameters.get("continue_name"):
                asked.setdefault(int(bars), []).append(entry.raw)
        return LengthRecord(tuple(length_fit(bars, texts) for bars, texts in sorted(asked.items())))

    def typical_patches(self, model: str, device: str | None = None) -> int:
        """Patches a piece of `model` took here, from the newest job with pieces that ended well; else
        TYPICAL_PATCHES."""
        device = device or self.device()
        for job in self.written_jobs():
            r = self.result(job)
            ended = [p.patches for p in r.pieces if p.status == "ok" and p.patches]
            if r.model == model and r.device == device and ended:
                return max(ended)
        return TYPICAL_PATCHES

    def defaults(self, model: str) -> dict:
        """The limits a new request starts with on this device: on a CPU a patch limit that ends the request
        in about CPU_TARGET_S (see `speed`); elsewhere the GenerationLimits defaults."""
        limits = GenerationLimits()
        values = {"max_patches": limits.max_patches, "max_seconds": limits.max_seconds}
        if self.device() == "cpu":
            per_patch, batch, _ = self.speed(model, "cpu")
            patches = CPU_TARGET_S / (per_patch / batch)
            values["max_patches"] = max(CPU_MIN_PATCHES, int(round(patches, -1)))
        return values

    def estimate(self, model: str, count: int, max_patches: int, max_seconds: float) -> Estimate:
        """How long a request of `count` pieces will take here: the patches each piece writes (its limit, or
        the model's typical length) at this device's speed (`speed`), never past the time limit."""
        device = self.device()
        per_patch, batch, measured = self.speed(model, device)
        count = max(1, int(count or 1))
        if device == "cpu":  # a CPU spends its time per piece; a GPU per step of the whole batch
            per_patch = per_patch / batch * count
        typical = self.typical_patches(model, device)
        patches, bound = ((max_patches, f"at most {max_patches} patches a piece") if max_patches
                          else (typical, "a piece of typical length"))
        seconds = patches * per_patch
        if max_seconds and seconds > max_seconds:
            seconds, bound = float(max_seconds), f"the {max_seconds:g} s time limit"
        return Estimate(seconds=seconds, device=device, bound=bound, measured=measured)

    def render_piece(self, abc: str, folder: Path, stem: str, should_stop=None, column: bool = False) -> PieceFiles:
        """Score pages, MusicXML, MIDI, PDF and WAV of a piece in `folder`; a failure is reported, not raised.
        `should_stop()` (a cancelled job) stops the render worker at once. `column`: the pages on screen are
        engraved COLUMN_PAGE_WIDTH wide, for a piece shown beside others (the PDF keeps A4 pages)."""
        out = PieceFiles()
        try:
            result = render_abc(abc, RenderConfig(follow=not column), should_stop=should_stop)
            if column:  # the pages on screen, and where their notes sit for the score to follow; the PDF stays A4
                narrow = render_abc(abc, RenderConfig(page_width=COLUMN_PAGE_WIDTH, fit_height=True, pdf=False),
                                    should_stop=should_stop)
                result = replace(result, svg_pages=narrow.svg_pages, follow=narrow.follow)
            pages = result.svg_pages
            soundfont = (inside(self.workspace.root, self.settings.soundfont, must_exist=True)
                         if self.settings.soundfont else None)
            wav = render_audio(result.midi, AudioConfig(soundfont=soundfont), should_stop=should_stop).wav
            exported = export_piece(result, folder, stem, wav=wav)
        except NotaGenError as e:
            out.error = f"the score could not be made: {e}"
            return out
        out.files = {kind: self.workspace.relative(p) for kind, p in exported.files.items()}
        for n, svg in enumerate(pages, 1):
            out.svg_pages.append(self.workspace.relative(atomic_write_text(folder / f"{stem}.page{n}.svg", svg)))
        out.problems = list(result.problems)
        return out

    @staticmethod
    def read_score(path: str | Path, name: str = "") -> str:
        """An uploaded score (ABC or MusicXML) as ABC text, for continuing or previewing it; AbcError naming
        the file when it is not music that can be continued (`continuation.read_score`)."""
        return read_score(path, name)

    def preview_score(self, abc: str) -> PieceFiles:
        """Render a piece someone uploaded (to continue it, or to check it) into exports/previews/."""
        digest = hashlib.sha256(abc.encode("utf-8")).hexdigest()[:16]
        folder = self.exports / "previews" / digest
        return self.render_piece(abc, folder, "preview")

    def replay(self, entry_id: int) -> GenerationSpec:
        """The request that made a library piece, for one piece with its seed (sampling is seeded per piece)."""
        entry = self.library.get(int(entry_id))
        data = {**entry.parameters, "model": entry.model, "period": entry.period, "composer": entry.composer,
                "instrumentation": entry.instrumentation, "seed": entry.seed, "count": 1}
        return from_params(GenerationSpec, data)

    def variations(self, entry_id: int, from_bar: int, count: int) -> tuple[GenerationSpec, Path]:
        """The request for `count` variations of a library piece from bar `from_bar` on (bars before it kept, as
        many written again as the piece has), and the piece's ABC file to continue; the piece's own model,
        prompt and settings, new seeds, the piece named as their parent."""
        entry, bars = self._finished(entry_id, "vary")
        if not 2 <= from_bar <= bars:
            raise SettingError(f"vary from bar 2 to {bars} (piece #{entry.id} has {bars} bars)")
        base = self.replay(entry.id)
        spec = replace(base, count=int(count), seed=base.seed + 1, keep_lines=from_bar - 1,
                       add_lines=bars - from_bar + 1, bar=0, parent_id=entry.id)
        return spec, self.exported_file(entry.files["abc"])

    def bar_rewrite(self, entry_id: int, bar: int, candidates: int) -> tuple[GenerationSpec, Path]:
        """The request that writes bar `bar` of a library piece again (`candidates` of it, ranked by the
        model's likelihood of the bars after it; every other bar kept), and the piece's ABC file; the piece's
        own model, prompt and settings, new seeds, the piece named as their parent."""
        entry, bars = self._finished(entry_id, "rewrite a bar of")
        if not 2 <= bar <= bars - 1:
            raise SettingError(f"rewrite a bar from 2 to {bars - 1} (piece #{entry.id} has {bars} bars; the first "
                               "and last have no bars before or after them)")
        base = self.replay(entry.id)
        spec = replace(base, count=int(candidates), seed=base.seed + 1, keep_lines=0, bar=int(bar),
                       parent_id=entry.id)
        return spec, self.exported_file(entry.files["abc"])

    def _finished(self, entry_id: int, doing: str) -> tuple[Generation, int]:
        """A library piece with a finished score, and its bars; NotaGenError naming it otherwise."""
        entry = self.library.get(int(entry_id))
        if entry.abc is None or not entry.files.get("abc"):
            raise NotaGenError(f"piece #{entry.id} has no finished score to {doing} ({entry.status})")
        return entry, len(score_lines(entry.abc)[1])

    def request_of(self, job: Job) -> GenerationSpec:
        """The request a generation job runs (for a page that finds the job again to show it)."""
        return from_params(GenerationSpec, job.params)

    @property
    def exports(self) -> Path:
        """The one folder the studio serves files from (audio, downloads)."""
        return self.workspace.area("exports")

    def exported_file(self, rel: str) -> Path:
        """A file the library or a job result names, re-checked: inside the workspace's exports folder."""
        path = inside(self.workspace.root, rel, must_exist=True)
        if not path.is_relative_to(self.exports):
            raise WorkspaceError(f"{rel!r}: only files in the exports folder can be served")
        return path
