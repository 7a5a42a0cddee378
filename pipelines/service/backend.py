"""What the studio's tabs call: the workspace's models, datasets and runs, and the job runners behind each tab.

`Backend(workspace)` owns the library, the job queue and the one loaded generation
engine. Every name or path that comes from the UI (or over HTTP) goes through the
workspace's path check here, so each handler is re-checked on the server whatever the
browser sent. Queries (lists, a dataset's pieces, a model's prompts, system status)
return plain data; long work is submitted as a job (`submit_*`) and its runner
(`run_*`) calls the pipelines: generation (then rendering, audio, export and a
library row per piece), dataset builds, training and DPO.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING

from pipelines.abc.prompts import Prompt, parse_prompt, read_prompts
from pipelines.errors import AbcError, DatasetError, NotaGenError, PromptError, TrainingError, WorkspaceError
from pipelines.files import safe_stem
from pipelines.generation.options import DEFAULT_BAR_RETRIES
from pipelines.service.jobs import Job, JobContext, JobQueue, Runner
from pipelines.service.library import Generation, Library
from pipelines.service.settings import Settings, read_settings
from pipelines.service.workspace import Workspace, check_name, inside

if TYPE_CHECKING:
    from pipelines.model.checkpoint import ModelCard  # imports torch; the studio's start-up does not need it

DEMO = "demo"
NOTAGENX = "notagen-x"
MODEL_SUFFIXES = (".pth",)
SCORE_UPLOADS = (".xml", ".musicxml", ".mxl", ".krn", ".mei", ".abc", ".mid", ".midi")
CONTINUE_UPLOADS = (".abc", ".xml", ".musicxml", ".mxl")
MAX_CONTINUE_BYTES = 2 * 2**20
UPLOAD_FOLDER = "uploads"  # imports/uploads/<name>/ holds files uploaded through the Dataset tab


@dataclass(frozen=True)
class ModelChoice:
    ref: str  # what the UI sends back: "demo", "notagen-x" or a workspace-relative .pth path
    label: str
    path: Path


@dataclass
class GenerationSpec:
    """One Generate click, as JSON-able job parameters."""

    model: str
    period: str
    composer: str
    instrumentation: str
    count: int = 1
    seed: int = 0
    top_k: int = 9
    top_p: float = 0.9
    temperature: float = 1.2
    max_patches: int = 0
    max_seconds: float = 600.0
    bar_retries: int = DEFAULT_BAR_RETRIES  # redraws of a bar line whose voices do not line up
    continue_abc: str = ""  # a piece to continue (standard or interleaved ABC); "" for a new piece
    continue_name: str = ""
    keep_lines: int = 0
    add_lines: int = 8

    @classmethod
    def from_dict(cls, data: dict) -> "GenerationSpec":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def parameters(self) -> dict:
        """What the library keeps to replay a piece (the seed is stored per piece)."""
        data = asdict(self)
        for key in ("model", "period", "composer", "instrumentation", "seed", "continue_abc"):
            data.pop(key)
        return data


@dataclass
class DatasetSummary:
    name: str
    pieces: int
    prompts: int
    train: int
    eval: int
    warnings: int
    built: bool


@dataclass
class SystemStatus:
    device: str
    gpu: str
    vram_used_gib: float | None
    vram_free_gib: float | None
    vram_total_gib: float | None
    dtype: str
    loaded_model: str
    running: str  # the job running on the GPU lane, "" when idle
    waiting: int


@dataclass
class PieceFiles:
    files: dict[str, str] = field(default_factory=dict)  # kind -> workspace-relative path
    svg_pages: list[str] = field(default_factory=list)  # workspace-relative .svg paths
    problems: list[str] = field(default_factory=list)
    error: str = ""


class Backend:
    def __init__(self, workspace: Workspace, settings: Settings | None = None):
        from pipelines.generation.loading import ModelSlot

        self.workspace = workspace
        self.settings = settings or read_settings(workspace.settings_path)
        self.library = Library(workspace.library_path)
        self.slot = ModelSlot()
        self._loaded_ref = ""
        self._cards: dict[tuple, ModelCard] = {}  # keyed by (path, size, mtime)
        self.jobs = JobQueue(workspace.area("jobs"), {
            "generate": Runner("gpu", self.run_generation),
            "train": Runner("gpu", self.run_training),
            "dpo": Runner("gpu", self.run_dpo),
            "dataset": Runner("cpu", self.run_dataset_build),
        })

    def close(self) -> None:
        self.jobs.close()
        self.slot.unload()

    # ------------------------------------------------------------------ models
    def models(self) -> list[ModelChoice]:
        """Every model the studio can load: the demo, NotaGen-X when present, checkpoints in models/ and runs/."""
        from pipelines.model.notagenx import NOTAGENX_FILE
        from pipelines.model.registry import DEMO_MODEL

        ws = self.workspace
        found = []
        if DEMO_MODEL.is_file():
            found.append(ModelChoice(DEMO, "Demo model (built in)", DEMO_MODEL))
        notagenx = ws.area("models") / NOTAGENX_FILE
        if notagenx.is_file():
            found.append(ModelChoice(NOTAGENX, "NotaGen-X", notagenx))
        for rel in ws.files("models", MODEL_SUFFIXES):
            if Path(rel).name != NOTAGENX_FILE:
                found.append(ModelChoice(rel, rel, ws.root / rel))
        for run in ws.folders("runs"):
            for name, what in (("best.pth", "best"), ("merged.pth", "merged")):
                path = ws.area("runs") / run / name
                if path.is_file():
                    found.append(ModelChoice(f"runs/{run}/{name}", f"run {run} ({what})", path))
            for path in sorted((ws.area("runs") / run).glob("iter_*/model.pth")):
                found.append(ModelChoice(ws.relative(path), f"DPO {run} {path.parent.name}", path))
        return found

    def model_path(self, ref: str) -> Path:
        """The file of a model the UI names; only models the studio lists, inside the workspace or built in."""
        from pipelines.model.registry import default_model_path

        ref = (ref or "").strip()
        if not ref:
            raise NotaGenError("no model chosen; pick one in the model list (none installed yet? train one "
                               "in the Train tab or copy a .pth checkpoint into the workspace's models folder)")
        if ref == DEMO:
            return default_model_path()
        if ref == NOTAGENX:
            from pipelines.model.notagenx import find_notagenx

            path = find_notagenx([self.workspace.area("models")])
            if path is None:
                raise NotaGenError("NotaGen-X is not in the workspace's models folder; download it first")
            return path
        path = inside(self.workspace.root, ref, must_exist=True)
        if path.suffix.lower() not in MODEL_SUFFIXES or not path.is_file():
            raise WorkspaceError(f"{ref!r}: not a model file (.pth)")
        if self.workspace.relative(path).split("/")[0] not in ("models", "runs"):
            raise WorkspaceError(f"{ref!r}: models live in the workspace's models/ or runs/ folders")
        return path

    def model_card(self, ref: str) -> tuple[Path, ModelCard]:
        """A listed model's file and its card (inferred from the tensor shapes for an upstream file).

        Cached until the file changes: the tabs ask on every change of a model, batch size or rank.
        """
        from pipelines.model.checkpoint import read_card

        path = self.model_path(ref)
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        if key not in self._cards:
            self._cards[key] = read_card(path)
        return path, self._cards[key]

    def model_prompts(self, ref: str) -> tuple[list[Prompt], str]:
        """The prompts a model knows, for the cascading dropdowns, and a note when they are borrowed."""
        from pipelines.model.registry import NOTAGENX_PROMPTS, prompt_vocabulary

        path, card = self.model_card(ref)
        lines = prompt_vocabulary(path, card)
        note = ""
        if not lines:
            lines = [p.line for p in read_prompts(NOTAGENX_PROMPTS)]
            note = ("this model records no prompt vocabulary; NotaGen-X's prompts are listed, and any "
                    "prompt is accepted")
        return [parse_prompt(line) for line in lines], note

    def unload(self) -> str:
        self.slot.unload()
        self._loaded_ref = ""
        return "no model loaded"

    # ------------------------------------------------------------------ system
    def system(self) -> SystemStatus:
        import torch  # the status strip reports what torch sees

        from pipelines.model.runtime import pick_runtime

        runtime = pick_runtime(self.settings.device, self.settings.dtype)
        gpu, used, free, total = "none (CPU)", None, None, None
        if runtime.device.type == "cuda":
            gpu = torch.cuda.get_device_name(runtime.device)
            free_b, total_b = torch.cuda.mem_get_info(runtime.device)
            free, total, used = free_b / 2**30, total_b / 2**30, (total_b - free_b) / 2**30
        elif runtime.device.type == "mps":
            gpu = "Apple GPU (MPS)"
        engine = self.slot.loaded()
        gpu_jobs = [j for j in self.jobs.list(200) if j.lane == "gpu"]
        running = [j for j in gpu_jobs if j.state == "running"]
        waiting = sum(1 for j in gpu_jobs if j.state == "queued")
        return SystemStatus(
            device=str(runtime.device), gpu=gpu, vram_used_gib=used, vram_free_gib=free, vram_total_gib=total,
            dtype=engine.runtime.dtype_name if engine else runtime.dtype_name,
            loaded_model=(engine.name if engine else ""), running=running[0].title if running else "",
            waiting=waiting)

    # ------------------------------------------------------------------ generation
    def submit_generation(self, spec: GenerationSpec) -> Job:
        """Check a Generate request here (the browser is not trusted), then queue it."""
        self.model_path(spec.model)
        prompt = Prompt(spec.period, spec.composer, spec.instrumentation)
        if not 1 <= int(spec.count) <= self.settings.max_pieces:
            raise NotaGenError(f"pieces per request must be 1 to {self.settings.max_pieces}, not {spec.count}")
        if not 0 <= int(spec.seed) < 2**62:
            raise NotaGenError(f"the seed must be a whole number from 0 to 2**62, not {spec.seed}")
        if spec.max_patches < 0 or not 0 < spec.max_seconds <= 3600:
            raise NotaGenError("max patches must be >= 0 and the time limit 1 s to 1 hour")
        if not 0 <= int(spec.bar_retries) <= 100:
            raise NotaGenError(f"bar redraws must be 0 to 100, not {spec.bar_retries}")
        self.sampling(spec)
        if spec.continue_abc:
            self.continuation(spec, prompt)
        title = f"generate {spec.count} x {prompt.line}"
        return self.jobs.submit("generate", asdict(spec), title)

    @staticmethod
    def sampling(spec: GenerationSpec):
        from pipelines.generation.options import SamplingConfig

        try:
            return SamplingConfig(int(spec.top_k), float(spec.top_p), float(spec.temperature))
        except ValueError as e:
            raise NotaGenError(str(e)) from None

    @staticmethod
    def continuation(spec: GenerationSpec, prompt: Prompt) -> str:
        from pipelines.generation.continuation import continuation_prefix

        if len(spec.continue_abc.encode("utf-8")) > MAX_CONTINUE_BYTES:
            raise AbcError(f"the piece to continue is over {MAX_CONTINUE_BYTES // 2**20} MB of ABC")
        return continuation_prefix(spec.continue_abc, prompt, keep_lines=int(spec.keep_lines),
                                   add_lines=int(spec.add_lines))

    def read_score(self, path: str | Path, name: str = "") -> str:
        """An uploaded score (ABC or MusicXML) as ABC text, for continuing or previewing it."""
        from pipelines.dataset.convert import StageError, read_musicxml, xml_to_abc

        path = Path(path)
        name = name or path.name
        suffix = Path(name).suffix.lower()
        if suffix not in CONTINUE_UPLOADS:
            raise AbcError(f"{name}: continue an .abc, .musicxml, .xml or .mxl file")
        if path.stat().st_size > MAX_CONTINUE_BYTES * (4 if suffix != ".abc" else 1):
            raise AbcError(f"{name}: too large to continue")
        if suffix == ".abc":
            try:
                return path.read_text(encoding="utf-8")
            except UnicodeDecodeError as e:
                raise AbcError(f"{name}: not UTF-8 text ({e.reason} at byte {e.start})") from None
        try:
            return xml_to_abc(read_musicxml(path).xml, Path(name).stem)
        except StageError as e:
            raise AbcError(f"{name}: {e}") from None

    def run_generation(self, ctx: JobContext) -> dict:
        from pipelines.generation.engine import GenerationRequest
        from pipelines.generation.options import GenerationLimits
        from pipelines.model.registry import validate_prompt

        spec = GenerationSpec.from_dict(ctx.params)
        path = self.model_path(spec.model)
        prompt = Prompt(spec.period, spec.composer, spec.instrumentation)
        ctx.say(f"loading {path.name}")
        engine = self.slot.get(path, self.settings.device, self.settings.dtype)
        self._loaded_ref = spec.model
        warning = validate_prompt(engine.card, prompt)
        prefix = self.continuation(spec, prompt) if spec.continue_abc else ""
        requests = [GenerationRequest(prompt=prompt, seed=int(spec.seed) + i, prefix=prefix)
                    for i in range(int(spec.count))]
        texts: dict[int, str] = {}

        def on_patch(row: int, text: str) -> None:
            texts[row] = text
            ctx.stream("texts", dict(texts))

        ctx.say(f"generating on {engine.runtime.device}")
        limits = GenerationLimits(max_patches=int(spec.max_patches), max_seconds=float(spec.max_seconds),
                                  bar_retries=int(spec.bar_retries))
        pieces = engine.generate(requests, self.sampling(spec), limits, on_patch=on_patch, should_stop=ctx.should_stop)
        results = []
        folder = self.workspace.area("exports") / ctx.job_id
        for n, piece in enumerate(pieces, 1):
            ctx.say(f"rendering piece {n} of {len(pieces)}")
            ctx.progress(n - 1, len(pieces))
            stem = prompt.file_stem(piece.request.seed)
            rendered = (self.render_piece(piece.abc, folder, stem) if piece.abc is not None
                        else PieceFiles(error="not rendered: " + (piece.reason or piece.status)))
            raw_path = folder / f"{stem}.raw.abc"
            from pipelines.files import atomic_write_text

            atomic_write_text(raw_path, piece.raw)
            rendered.files["raw"] = self.workspace.relative(raw_path)
            entry_id = self.library.add(Generation(
                model=spec.model, prompt=prompt.line, period=prompt.period, composer=prompt.composer,
                instrumentation=prompt.instrumentation, seed=piece.request.seed, status=piece.status,
                reason=piece.reason, raw=piece.raw, abc=piece.abc, parameters=spec.parameters(),
                files={**rendered.files, "svg": rendered.svg_pages}, seconds=round(piece.seconds, 3),
                job_id=ctx.job_id))
            results.append({"id": entry_id, "seed": piece.request.seed, "status": piece.status,
                            "reason": piece.reason, "chars": piece.chars, "render_error": rendered.error,
                            "problems": rendered.problems})
        ctx.progress(len(pieces), len(pieces))
        return {"pieces": results, "warning": warning, "model": spec.model, "prompt": prompt.line}

    def render_piece(self, abc: str, folder: Path, stem: str) -> PieceFiles:
        """Score pages, MusicXML, MIDI, PDF and WAV of a piece in `folder`; a failure is reported, not raised."""
        from pipelines.files import atomic_write_text
        from pipelines.render.audio import AudioConfig, render_audio
        from pipelines.render.export import export_piece
        from pipelines.render.score import RenderConfig, render_abc

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

    def piece(self, entry_id: int) -> Generation:
        return self.library.get(int(entry_id))

    def preview_score(self, abc: str) -> PieceFiles:
        """Render a piece someone uploaded (to continue it, or to check it) into exports/previews/."""
        digest = hashlib.sha256(abc.encode("utf-8")).hexdigest()[:16]
        folder = self.workspace.area("exports") / "previews" / digest
        return self.render_piece(abc, folder, "preview")

    def rate(self, entry_id: int, rating: int) -> Generation:
        return self.library.rate(int(entry_id), int(rating))

    def replay(self, entry_id: int) -> GenerationSpec:
        """The request that made a library piece, for one piece with its seed (sampling is seeded per piece)."""
        entry = self.library.get(int(entry_id))
        data = {**entry.parameters, "model": entry.model, "period": entry.period, "composer": entry.composer,
                "instrumentation": entry.instrumentation, "seed": entry.seed, "count": 1}
        return GenerationSpec.from_dict(data)

    def workspace_file(self, rel: str) -> Path:
        """A file the library or a job result names, re-checked: inside the workspace's exports folder."""
        path = inside(self.workspace.root, rel, must_exist=True)
        if not path.is_relative_to(self.workspace.area("exports")):
            raise WorkspaceError(f"{rel!r}: only files in the exports folder can be served")
        return path

    # ------------------------------------------------------------------ datasets
    def datasets(self) -> list[DatasetSummary]:
        from pipelines.dataset import load_manifest

        out = []
        for name in self.workspace.folders("datasets"):
            folder = self.workspace.area("datasets") / name
            try:
                pieces = load_manifest(folder, missing_ok=True)["pieces"]
            except DatasetError:
                pieces = {}
            prompts = folder / "prompts.txt"
            out.append(DatasetSummary(
                name=name, pieces=len(pieces),
                prompts=len(read_prompts(prompts)) if prompts.is_file() else 0,
                train=sum(1 for e in pieces.values() if e.get("split") == "train"),
                eval=sum(1 for e in pieces.values() if e.get("split") == "eval"),
                warnings=sum(1 for e in pieces.values() if e.get("warnings")),
                built=(folder / "manifest.json").is_file()))
        return out

    def dataset_dir(self, name: str, must_exist: bool = True) -> Path:
        folder = self.workspace.path("datasets", check_name(name, "dataset name"), must_exist=must_exist)
        if must_exist and not (folder / "manifest.json").is_file():
            raise DatasetError(f"dataset {name!r} is not built yet (no manifest.json)")
        return folder

    def import_folders(self) -> list[str]:
        """Folders a dataset can be built from: imports/<name> and imports/uploads/<name>."""
        ws = self.workspace
        found = [name for name in ws.folders("imports") if name != UPLOAD_FOLDER]
        uploads = ws.area("imports") / UPLOAD_FOLDER
        if uploads.is_dir():
            found += [f"{UPLOAD_FOLDER}/{p.name}" for p in sorted(uploads.iterdir()) if p.is_dir()]
        return found

    def store_uploads(self, files: list[tuple[Path, str]], name: str) -> str:
        """Copy uploaded score files (temp path, original name) into imports/uploads/<name>/; returns the folder."""
        name = check_name(name, "import name")
        if not files:
            raise DatasetError("no files were uploaded")
        folder = self.workspace.path("imports", f"{UPLOAD_FOLDER}/{name}")
        folder.mkdir(parents=True, exist_ok=True)
        for temp, original in files:
            base = Path(str(original).replace("\\", "/")).name
            if Path(base).suffix.lower() not in SCORE_UPLOADS:
                raise DatasetError(f"{base}: not a score file ({', '.join(SCORE_UPLOADS)})")
            target = inside(folder, safe_stem(Path(base).stem) + Path(base).suffix.lower())
            shutil.copyfile(temp, target)
        return f"{UPLOAD_FOLDER}/{name}"

    def submit_dataset(self, name: str, source: str, corpus_limit: int | None = None, period: str = "",
                       composer: str = "", instrumentation: str = "", eval_split: float = 0.1,
                       max_unaligned_share: float = 1.0) -> Job:
        """Build datasets/<name> from a folder in imports/ (or music21's corpus when source is 'corpus')."""
        self.dataset_dir(name, must_exist=False)
        if source != "corpus":
            self.workspace.path("imports", source, must_exist=True)
        elif corpus_limit is not None and int(corpus_limit) < 1:
            raise DatasetError("the corpus limit must be at least 1")
        from pipelines.dataset import DatasetConfig

        DatasetConfig(eval_split=float(eval_split), max_unaligned_share=float(max_unaligned_share))  # checks them
        params = {"name": name, "source": source, "corpus_limit": corpus_limit, "period": period or None,
                  "composer": composer or None, "instrumentation": instrumentation or None,
                  "eval_split": float(eval_split), "max_unaligned_share": float(max_unaligned_share)}
        return self.jobs.submit("dataset", params, f"build dataset {name}")

    def run_dataset_build(self, ctx: JobContext) -> dict:
        from pipelines.dataset import DatasetConfig, Labels, build_corpus_dataset, build_dataset

        p = ctx.params
        out = self.dataset_dir(p["name"], must_exist=False)
        labels = Labels(p.get("period"), p.get("composer"), p.get("instrumentation"))
        config = DatasetConfig(labels=labels, eval_split=p["eval_split"],
                               max_unaligned_share=p.get("max_unaligned_share", 1.0))
        ctx.say("converting scores")
        if p["source"] == "corpus":
            report = build_corpus_dataset(out, limit=p.get("corpus_limit"), config=config,
                                          on_progress=ctx.progress, should_stop=ctx.should_stop)
        else:
            source = self.workspace.path("imports", p["source"], must_exist=True)
            report = build_dataset([source], out, config, on_progress=ctx.progress, should_stop=ctx.should_stop)
        return {"summary": report.summary().replace(str(self.workspace.root), "workspace"),
                "files": [{"source": Path(f.source).name, "piece": f.piece, "status": f.status,
                           "stage": f.stage or "", "reason": f.reason or "", "lossy": f.lossy} for f in report.files],
                "cancelled": report.cancelled}

    def dataset_pieces(self, name: str) -> list[dict]:
        from pipelines.dataset import load_manifest

        pieces = load_manifest(self.dataset_dir(name))["pieces"]
        return [{"piece": piece, "period": e["period"], "composer": e["composer"],
                 "instrumentation": e["instrumentation"], "split": e["split"],
                 "suggested": " / ".join(v for v in (e.get("suggested") or {}).values() if v) if isinstance(
                     e.get("suggested"), dict) else str(e.get("suggested") or ""),
                 "warnings": "; ".join(e.get("warnings") or [])} for piece, e in pieces.items()]

    def check_labels(self, period: str, composer: str, instrumentation: str) -> list[str]:
        """Validation of one row: errors raise (non-ASCII, '_'), vocabulary warnings are returned."""
        from pipelines.dataset.annotate import clean_label, vocabulary_warnings

        for what, value in (("period", period), ("composer", composer), ("instrumentation", instrumentation)):
            if value and not value.isascii():
                raise PromptError(f"{what} {value!r} must be ASCII (e.g. 'Dvorak, Antonin')")
        prompt = Prompt(clean_label(period, "period") or "Unknown", clean_label(composer, "composer") or "Unknown",
                        clean_label(instrumentation, "instrumentation") or "Unknown")
        return vocabulary_warnings(prompt)

    def save_annotations(self, name: str, rows: list[dict]) -> dict:
        """Rewrite the headers of the pieces whose labels changed (rows: piece, period, composer, instrumentation)."""
        from pipelines.dataset import Labels, load_manifest, reannotate

        folder = self.dataset_dir(name)
        current = load_manifest(folder)["pieces"]
        labels = {}
        for row in rows:
            piece = str(row.get("piece", ""))
            if piece not in current:
                raise DatasetError(f"dataset {name!r} has no piece {piece!r}")
            values = [str(row.get(k) or "").strip() for k in ("period", "composer", "instrumentation")]
            self.check_labels(*values)
            if values != [current[piece][k] for k in ("period", "composer", "instrumentation")]:
                labels[piece] = Labels(*(v or None for v in values))
        if labels:
            reannotate(folder, labels)
        return {"changed": len(labels)}

    def suggestions(self, name: str) -> dict[str, dict]:
        """The score's own suggestion per piece (from the build), for 'apply suggestions'."""
        from pipelines.dataset import load_manifest

        pieces = load_manifest(self.dataset_dir(name))["pieces"]
        return {piece: e.get("suggested") or {} for piece, e in pieces.items()}

    def dataset_piece_abc(self, name: str, piece: str) -> str:
        from pipelines.dataset import interleaved_path, load_manifest

        folder = self.dataset_dir(name)
        if piece not in load_manifest(folder)["pieces"]:
            raise DatasetError(f"dataset {name!r} has no piece {piece!r}")
        path = interleaved_path(folder, piece)
        return path.read_text(encoding="utf-8")

    # ------------------------------------------------------------------ training
    def submit_training(self, params: dict) -> Job:
        """params: dataset, run, base (a model ref) or preset, and TrainConfig fields (epochs, lr, ...)."""
        config = self.train_config(params)
        if config.resume and not (config.out_dir / "last.pth").is_file():
            raise TrainingError(f"run {params['run']!r} has nothing to resume (no last.pth)")
        if not config.resume and (config.out_dir / "last.pth").is_file():
            raise TrainingError(f"run {params['run']!r} exists; resume it or choose another run name")
        return self.jobs.submit("train", params, f"train {params['run']}")

    def train_config(self, params: dict):
        from pipelines.training import TrainConfig

        params = dict(params)
        data_dir = self.dataset_dir(params.pop("dataset"))
        out_dir = self.workspace.path("runs", check_name(params.pop("run"), "run name"))
        base_ref = params.pop("base", None) or None
        base = None
        if base_ref:
            base = "notagen-x" if base_ref == NOTAGENX else str(self.model_path(base_ref))
        allowed = {"preset", "epochs", "max_steps", "batch_size", "grad_accum", "lr", "warmup_steps", "schedule",
                   "patience", "lora_rank", "seed", "resume", "key_augment", "save_every"}
        unknown = set(params) - allowed
        if unknown:
            raise TrainingError(f"unknown training settings: {', '.join(sorted(unknown))}")
        return TrainConfig(data_dir=data_dir, out_dir=out_dir, base=base, models_dirs=[self.workspace.area("models")],
                           device=self.settings.device, **{k: v for k, v in params.items() if v is not None})

    def run_training(self, ctx: JobContext) -> dict:
        from pipelines.training import train

        config = self.train_config(ctx.params)
        self.unload()  # the card holds one model at a time
        ctx.say("starting")

        def on_log(record: dict) -> None:
            if record.get("event") == "step":
                ctx.say(f"step {record['step']}/{record['total_steps']}, loss {record['loss']:.4f}, "
                        f"ETA {int(record['eta_s']) // 60} min {int(record['eta_s']) % 60:02d} s")

        result = train(config, on_log=on_log, on_progress=ctx.progress, should_stop=ctx.should_stop)
        rel = self.workspace.relative
        return {"status": result.status, "step": result.step, "epoch": result.epoch,
                "best_eval_loss": result.best_eval_loss,
                "best": rel(result.best_path) if result.best_path else "", "run": rel(config.out_dir)}

    def runs(self) -> list[str]:
        return self.workspace.folders("runs")

    def run_log(self, run: str) -> list[dict]:
        from pipelines.training import read_train_log

        folder = self.workspace.path("runs", check_name(run, "run name"), must_exist=True)
        log = folder / "train_log.jsonl"
        return read_train_log(log) if log.is_file() else []

    RESUMED_FIELDS = ("epochs", "max_steps", "lr", "batch_size", "grad_accum", "warmup_steps", "lora_rank",
                      "patience", "schedule", "seed", "key_augment", "save_every")

    def resume_params(self, run: str) -> dict:
        """The training parameters that resume a run, from its saved config.json."""
        folder = self.workspace.path("runs", check_name(run, "run name"), must_exist=True)
        path = folder / "config.json"
        if not path.is_file():
            raise TrainingError(f"run {run!r} has no config.json")
        saved = json.loads(path.read_text(encoding="utf-8"))
        base = saved.get("base")
        params = {"dataset": Path(saved["data_dir"]).name, "run": run, "base": self.base_ref(base) if base else None,
                  "preset": saved.get("preset"), "resume": True}
        params.update({k: saved[k] for k in self.RESUMED_FIELDS if k in saved})
        return params

    def base_ref(self, base: str) -> str:
        """The model ref of a run's recorded base (NotaGen-X's name or the file's absolute path)."""
        from pipelines.model.notagenx import is_notagenx_name

        if is_notagenx_name(base):
            return NOTAGENX
        path = Path(base)
        if path.is_absolute() and path.resolve().is_relative_to(self.workspace.root):
            return self.workspace.relative(path)
        for model in self.models():
            if model.path.resolve() == path.resolve():
                return model.ref
        raise TrainingError(f"the run's base model {path.name} is no longer in the workspace")

    def training_memory(self, base_ref: str, preset_name: str, batch_size: int, lora_rank: int) -> str:
        """A rough VRAM estimate for a training setting (weights, gradients, AdamW states, activations)."""
        from pipelines.model.config import preset
        from pipelines.training.memory import estimate_step_memory

        if base_ref:
            config = self.model_card(base_ref)[1].config
        else:
            try:
                config = preset(preset_name or "demo")
            except ValueError as e:
                raise TrainingError(str(e)) from None
        estimate = estimate_step_memory(config, sequences=max(1, int(batch_size)), lora_rank=int(lora_rank or 0))
        return (f"{estimate.describe()} ({'LoRA rank ' + str(lora_rank) if lora_rank else 'full fine-tuning'}, "
                f"batch {batch_size}, full-length pieces); a rough estimate, the first steps show the real use")

    # ------------------------------------------------------------------ DPO
    DPO_FIELDS = ("iterations", "samples", "portion", "scorer", "beta", "lam", "steps", "lr", "top_k", "top_p",
                  "temperature", "generation_batch", "max_patches", "max_seconds", "seed")

    def dpo_config(self, params: dict):
        """params: model (a ref), dataset, run, clamp2 (a ref in models/ or ""), use_ratings, and DPOConfig fields."""
        from pipelines.dpo import DPOConfig

        p = dict(params)
        extra = {k: p[k] for k in self.DPO_FIELDS if p.get(k) is not None}
        clamp2 = self.model_path(p["clamp2"]) if p.get("clamp2") else None
        return DPOConfig(model=self.model_path(p["model"]), data_dir=self.dataset_dir(p["dataset"]),
                         out_dir=self.workspace.path("runs", check_name(p["run"], "run name")),
                         clamp2_weights=clamp2, device=self.settings.device, **extra)

    def human_ratings(self) -> list:
        """The library's thumbs up / down as DPO's human preference records (name: library-<id>)."""
        from pipelines.dpo import HumanRating

        return [HumanRating(abc=r.abc, rating=r.rating, prompt=parse_prompt(r.prompt), name=f"library-{r.id}")
                for r in self.library.preference_records()]

    def submit_dpo(self, params: dict) -> Job:
        config = self.dpo_config(params)
        if config.scorer == "none" and not (params.get("use_ratings") and self.library.preference_records()):
            raise NotaGenError("without a scorer, DPO learns only from rated pieces: rate some in the Library "
                               "or Generate tab, and keep 'use my ratings' on")
        return self.jobs.submit("dpo", params, f"DPO {params['run']}")

    def run_dpo(self, ctx: JobContext) -> dict:
        from pipelines.dpo import run_dpo

        config = self.dpo_config(ctx.params)
        self.unload()
        ratings = self.human_ratings() if ctx.params.get("use_ratings") else []

        def on_log(record: dict) -> None:
            event = record.get("event", "")
            if event in ("generate", "scored", "iteration", "final"):
                ctx.say(f"{event}: iteration {record.get('iteration', '')}")
            elif event == "step":
                ctx.say(f"iteration {record.get('iteration', '')}: optimising, step {record.get('step', '')}")

        result = run_dpo(config, ratings=ratings, on_log=on_log, on_progress=ctx.progress,
                         should_stop=ctx.should_stop)
        return {"status": result.status, "mean_scores": result.mean_scores,
                "final_model": self.workspace.relative(result.final_model)
                if result.final_model.resolve().is_relative_to(self.workspace.root) else result.final_model.name}

    def dpo_summary(self, run: str) -> dict:
        folder = self.workspace.path("runs", check_name(run, "run name"), must_exist=True)
        path = folder / "summary.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}

    def dpo_pairs(self, run: str, iteration: int) -> dict[str, list[str]]:
        """Names of the chosen and rejected pieces of one iteration."""
        folder = self.workspace.path("runs", check_name(run, "run name"), must_exist=True)
        path = inside(folder, f"iter_{int(iteration)}/preference.json")
        if not path.is_file():
            return {"chosen": [], "rejected": []}
        data = json.loads(path.read_text(encoding="utf-8"))
        return {k: [c["name"] for c in data.get(k, [])] for k in ("chosen", "rejected")}

    def dpo_piece(self, run: str, iteration: int, name: str) -> str:
        """The ABC of a piece of a DPO pair: a generated sample, or a rated library piece."""
        if name.startswith("library-") and name[8:].isdigit():
            entry = self.library.get(int(name[8:]))
            return entry.abc or entry.raw
        folder = self.workspace.path("runs", check_name(run, "run name"), must_exist=True)
        return inside(folder, f"iter_{int(iteration)}/samples/{check_name(name, 'piece name')}.abc",
                      must_exist=True).read_text(encoding="utf-8")

    def dpo_memory(self, model_ref: str) -> str:
        from pipelines.dpo import estimate_dpo_memory

        return estimate_dpo_memory(self.model_card(model_ref)[1].config).describe()

    # ------------------------------------------------------------------ jobs
    def job(self, job_id: str) -> Job:
        return self.jobs.get(str(job_id))

    def job_live(self, job_id: str) -> dict:
        return self.jobs.live(str(job_id))

    def job_position(self, job_id: str) -> int:
        return self.jobs.position(str(job_id))

    def cancel(self, job_id: str) -> Job:
        return self.jobs.cancel(str(job_id))

    def wait(self, job_id: str, timeout: float) -> Job:
        return self.jobs.wait(str(job_id), timeout)


def job_line(job: Job, position: int) -> str:
    """One line a musician reads about a job."""
    if job.state == "queued":
        return f"waiting: number {position} in line for the GPU" if position > 0 else "waiting"
    if job.state == "running":
        progress = f" ({job.done}/{job.total})" if job.total else ""
        return f"running{progress}: {job.message}"
    if job.state == "failed":
        return f"failed: {job.error}"
    if job.state == "cancelled":
        return f"cancelled: {job.error}"
    return "finished"
