"""The generation service: a Generate request as a checked spec, its job (generate, render, audio, export,
one library row per piece), uploaded scores read or previewed, and replaying a library piece.

The sampling and limit fields mirror `SamplingConfig` and `GenerationLimits`, the one home
of their defaults and ranges.
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pipelines.abc.prompts import Prompt
from pipelines.abc.tokenizer import readable
from pipelines.errors import AbcError, NotaGenError, SettingError, WorkspaceError
from pipelines.fields import same_as
from pipelines.files import atomic_write_text
from pipelines.generation.continuation import (
    MAX_ABC_BYTES,
    SCORE_SUFFIXES,
    continuation_prefix,
    judge_continuation,
    read_score,
)
from pipelines.generation.engine import GenerationRequest
from pipelines.generation.header import HeaderControls
from pipelines.generation.options import GenerationLimits, SamplingConfig
from pipelines.model.registry import validate_prompt
from pipelines.render.audio import AudioConfig, render_audio
from pipelines.render.export import export_piece
from pipelines.render.score import RenderConfig, render_abc
from pipelines.service.jobs import Job, JobContext, JobQueue, Runner
from pipelines.service.library import Generation, Library
from pipelines.service.models import ModelService
from pipelines.service.settings import Settings
from pipelines.service.specs import JobResult, check_spec, from_params
from pipelines.service.workspace import Workspace, inside

KIND = "generate"
CONTINUE_UPLOADS = SCORE_SUFFIXES
MAX_SEED = 2**62


@dataclass
class GenerationSpec:
    """One Generate click: the model, the prompt, how many pieces, sampling, limits, the meter, key, tempo
    and length (each "" / None: the model's choice), and a piece to continue."""

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
            return ""
        name = self.continue_name or "the piece to continue"
        try:
            prefix = continuation_prefix(self.continue_abc, self.prompt, keep_lines=self.keep_lines,
                                         add_lines=self.add_lines)
        except AbcError as e:
            raise AbcError(f"{name}: {e}") from None
        try:
            self.header().check_continuation(prefix)
        except SettingError as e:
            raise SettingError(f"{name}: {e}") from None
        return prefix

    def parameters(self) -> dict:
        """What the library keeps to replay a piece (the seed is stored per piece)."""
        data = asdict(self)
        for key in ("model", "period", "composer", "instrumentation", "seed", "continue_abc"):
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


@dataclass(frozen=True)
class GenerationResult(JobResult):
    pieces: list[PieceResult]
    warning: str  # about the prompt (a model without a vocabulary) or a meter or key it never saw, "" when none
    model: str
    prompt: str

    @property
    def complete(self) -> int:
        return sum(1 for p in self.pieces if p.status == "ok")

    @classmethod
    def from_dict(cls, data: dict) -> "GenerationResult":
        return cls(pieces=[PieceResult(**p) for p in data.get("pieces", [])], warning=data.get("warning", ""),
                   model=data.get("model", ""), prompt=data.get("prompt", ""))


class GenerationService:
    def __init__(self, workspace: Workspace, settings: Settings, jobs: JobQueue, models: ModelService,
                 library: Library):
        self.workspace = workspace
        self.settings = settings
        self.jobs = jobs
        self.models = models
        self.library = library
        jobs.register(KIND, Runner("gpu", self.run))

    def submit(self, spec: GenerationSpec) -> Job:
        """Check a Generate request here (the browser is not trusted), then queue it."""
        self.models.path(spec.model)
        if spec.count > self.settings.max_pieces:
            raise SettingError(f"pieces per request must be 1 to {self.settings.max_pieces}, not {spec.count}")
        spec.prefix()
        return self.jobs.submit(KIND, asdict(spec), f"generate {spec.count} x {spec.prompt.line}")

    @staticmethod
    def result(job: Job) -> GenerationResult:
        return GenerationResult.from_dict(job.result)

    def run(self, ctx: JobContext) -> dict:
        spec = from_params(GenerationSpec, ctx.params)
        path = self.models.path(spec.model)
        prompt = spec.prompt
        ctx.say(f"loading {path.name}")
        engine = self.models.slot.get(path, self.settings.device, self.settings.dtype)
        prefix, header = spec.prefix(), spec.header()
        unseen = "" if prefix else self.models.header_choices(spec.model, prompt).unseen(header, prompt.line)
        warning = "; ".join(w for w in (validate_prompt(engine.card, prompt), unseen) if w)
        requests = [GenerationRequest(prompt=prompt, seed=spec.seed + i, prefix=prefix, header=header)
                    for i in range(spec.count)]
        texts: dict[int, str] = {}

        def on_patch(row: int, text: str) -> None:
            texts[row] = readable(text)  # the raw text is kept with the piece
            ctx.stream("texts", dict(texts))

        ctx.say(f"generating on {engine.runtime.device}")
        pieces = engine.generate(requests, spec.sampling(), spec.limits(), on_patch=on_patch,
                                 should_stop=ctx.should_stop)
        pieces = [judge_continuation(piece) for piece in pieces]
        results = []
        folder = self.exports / ctx.job_id
        for n, piece in enumerate(pieces, 1):
            ctx.say(f"rendering piece {n} of {len(pieces)}")
            ctx.progress(n - 1, len(pieces))
            stem = prompt.file_stem(piece.request.seed)
            rendered = (self.render_piece(piece.abc, folder, stem) if piece.abc is not None
                        else PieceFiles(error="not rendered: " + (piece.reason or piece.status)))
            raw_path = atomic_write_text(folder / f"{stem}.raw.abc", piece.raw)
            rendered.files["raw"] = self.workspace.relative(raw_path)
            entry_id = self.library.add(Generation(
                model=spec.model, prompt=prompt.line, period=prompt.period, composer=prompt.composer,
                instrumentation=prompt.instrumentation, seed=piece.request.seed, status=piece.status,
                reason=piece.reason, raw=piece.raw, abc=piece.abc, parameters=spec.parameters(),
                files={**rendered.files, "svg": rendered.svg_pages}, seconds=round(piece.seconds, 3),
                job_id=ctx.job_id))
            results.append(PieceResult(id=entry_id, seed=piece.request.seed, status=piece.status,
                                       reason=piece.reason, chars=piece.chars, render_error=rendered.error,
                                       problems=list(rendered.problems)))
        ctx.progress(len(pieces), len(pieces))
        return GenerationResult(results, warning, spec.model, prompt.line).to_dict()

    def render_piece(self, abc: str, folder: Path, stem: str) -> PieceFiles:
        """Score pages, MusicXML, MIDI, PDF and WAV of a piece in `folder`; a failure is reported, not raised."""
        out = PieceFiles()
        try:
            result = render_abc(abc, RenderConfig())
            soundfont = (inside(self.workspace.root, self.settings.soundfont, must_exist=True)
                         if self.settings.soundfont else None)
            wav = render_audio(result.midi, AudioConfig(soundfont=soundfont)).wav
            exported = export_piece(result, folder, stem, wav=wav)
        except NotaGenError as e:
            out.error = f"the score could not be made: {e}"
            return out
        out.files = {kind: self.workspace.relative(p) for kind, p in exported.files.items()}
        for n, svg in enumerate(result.svg_pages, 1):
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
