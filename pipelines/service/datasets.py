"""The datasets service: the workspace's datasets and import folders, uploads, a build as a checked spec and
its job, and a dataset's labels (read, checked, rewritten).

The build's eval split and unaligned share mirror `DatasetConfig`, their one home.
"""
from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from pipelines.abc.prompts import Prompt, read_prompts
from pipelines.dataset import (
    DatasetConfig,
    Labels,
    build_corpus_dataset,
    build_dataset,
    interleaved_path,
    load_manifest,
    reannotate,
)
from pipelines.dataset.annotate import clean_label, vocabulary_warnings
from pipelines.errors import DatasetError, PromptError
from pipelines.fields import same_as
from pipelines.files import safe_stem, too_large
from pipelines.service.jobs import Job, JobContext, JobQueue, Runner
from pipelines.service.specs import JobResult, check_spec, from_params
from pipelines.service.workspace import Workspace, check_name, inside

KIND = "dataset"
CORPUS = "corpus"  # the source that builds from music21's bundled corpus
SCORE_UPLOADS = (".xml", ".musicxml", ".mxl", ".krn", ".mei", ".abc", ".mid", ".midi")
UPLOAD_FOLDER = "uploads"  # imports/uploads/<name>/ holds files uploaded through the Dataset tab
LABELS = ("period", "composer", "instrumentation")


@dataclass
class DatasetSpec:
    """One build: datasets/<name> from a folder in imports/ (or music21's corpus), labels and options."""

    name: str
    source: str = CORPUS  # "corpus" or a folder inside imports/
    corpus_limit: int | None = 40  # the corpus's first N pieces (chorales first); None: all
    period: str = ""  # for every piece; "": suggested from each score
    composer: str = ""
    instrumentation: str = ""
    eval_split: float = same_as(DatasetConfig, "eval_split")
    max_unaligned_share: float = same_as(DatasetConfig, "max_unaligned_share")

    def __post_init__(self):
        for name in ("name", "source", *LABELS):
            setattr(self, name, (getattr(self, name) or "").strip())
        self.name = check_name(self.name, "dataset name")
        check_spec(self)
        if self.source == CORPUS and self.corpus_limit is not None and self.corpus_limit < 1:
            raise DatasetError("the corpus limit must be at least 1")
        if not self.source:
            raise DatasetError("choose an import folder (copy scores into the workspace's imports folder first)")
        self.config()  # DatasetConfig's own checks

    def config(self) -> DatasetConfig:
        labels = Labels(self.period or None, self.composer or None, self.instrumentation or None)
        return DatasetConfig(labels=labels, eval_split=self.eval_split, max_unaligned_share=self.max_unaligned_share)


@dataclass(frozen=True)
class DatasetSummary:
    name: str
    pieces: int
    prompts: int
    train: int
    eval: int
    warnings: int
    built: bool


@dataclass(frozen=True)
class BuiltFile:
    source: str  # the file's name
    piece: str
    status: str  # ok | cached | excluded | failed | cancelled
    stage: str
    reason: str
    lossy: bool


@dataclass(frozen=True)
class DatasetBuildResult(JobResult):
    summary: str
    files: list[BuiltFile]
    cancelled: bool
    empty: bool = False  # no piece could be converted: nothing was built (the summary says why, per file)

    @classmethod
    def from_dict(cls, data: dict) -> "DatasetBuildResult":
        return cls(summary=data.get("summary", ""), files=[BuiltFile(**f) for f in data.get("files", [])],
                   cancelled=bool(data.get("cancelled", False)), empty=bool(data.get("empty", False)))


@dataclass
class PieceLabels:
    """One piece of a dataset as the Annotate tab lists it."""

    piece: str
    period: str = ""
    composer: str = ""
    instrumentation: str = ""
    split: str = ""
    suggested: str = ""  # the score's own suggestion, "period / composer / instrumentation", "-" where unknown
    warnings: str = ""

    @classmethod
    def columns(cls) -> list[str]:
        return [f.name for f in fields(cls)]


class DatasetService:
    def __init__(self, workspace: Workspace, jobs: JobQueue):
        self.workspace = workspace
        self.jobs = jobs
        jobs.register(KIND, Runner("cpu", self.run))

    def list(self) -> list[DatasetSummary]:
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

    def built(self) -> list[str]:
        return [d.name for d in self.list() if d.built]

    def folder(self, name: str, must_exist: bool = True) -> Path:
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
        present = {p.name.casefold(): p.name for p in folder.iterdir()}  # before this upload
        written: set[str] = set()  # by this upload, casefolded
        for temp, original in files:
            base = Path(str(original).replace("\\", "/")).name
            if Path(base).suffix.lower() not in SCORE_UPLOADS:
                raise DatasetError(f"{base}: not a score file ({', '.join(SCORE_UPLOADS)})")
            if problem := too_large(temp):
                raise DatasetError(problem.replace(Path(temp).name, base, 1))
            stem, suffix = safe_stem(Path(base).stem), Path(base).suffix.lower()
            # Names equal but for capitals are one file on Windows: such a file is kept apart as <stem>-2.
            # A file uploaded again under its exact name replaces the earlier upload.
            file_name, n = f"{stem}{suffix}", 1
            while file_name.casefold() in written or present.get(file_name.casefold(), file_name) != file_name:
                n += 1
                file_name = f"{stem}-{n}{suffix}"
            written.add(file_name.casefold())
            shutil.copyfile(temp, inside(folder, file_name))
        return f"{UPLOAD_FOLDER}/{name}"

    def submit(self, spec: DatasetSpec) -> Job:
        """Build datasets/<name> from a folder in imports/ (or music21's corpus); refused while one of the
        same dataset is queued or running."""
        self.folder(spec.name, must_exist=False)
        if spec.source != CORPUS:
            self.workspace.path("imports", spec.source, must_exist=True)
        return self.jobs.submit(KIND, asdict(spec), f"build dataset {spec.name}", unique="name")

    @staticmethod
    def result(job: Job) -> DatasetBuildResult:
        return DatasetBuildResult.from_dict(job.result)

    def run(self, ctx: JobContext) -> dict:
        spec = from_params(DatasetSpec, ctx.params)
        out = self.folder(spec.name, must_exist=False)
        ctx.say("converting scores")
        if spec.source == CORPUS:
            report = build_corpus_dataset(out, limit=spec.corpus_limit, config=spec.config(),
                                          on_progress=ctx.progress, should_stop=ctx.should_stop)
        else:
            source = self.workspace.path("imports", spec.source, must_exist=True)
            report = build_dataset([source], out, spec.config(), on_progress=ctx.progress,
                                   should_stop=ctx.should_stop)
        files = [BuiltFile(source=Path(f.source).name, piece=f.piece, status=f.status, stage=f.stage or "",
                           reason=f.reason or "", lossy=f.lossy) for f in report.files]
        return DatasetBuildResult(summary=report.summary().replace(str(self.workspace.root), "workspace"),
                                  files=files, cancelled=report.cancelled, empty=report.empty).to_dict()

    # -- labels
    def pieces(self, name: str) -> list[PieceLabels]:
        pieces = load_manifest(self.folder(name))["pieces"]
        rows = []
        for piece, e in pieces.items():
            suggested = e.get("suggested") if isinstance(e.get("suggested"), dict) else {}
            shown = " / ".join(suggested.get(k) or "-" for k in LABELS)
            rows.append(PieceLabels(piece=piece, period=e["period"], composer=e["composer"],
                                    instrumentation=e["instrumentation"], split=e["split"], suggested=shown,
                                    warnings="; ".join(e.get("warnings") or [])))
        return rows

    def check_labels(self, period: str, composer: str, instrumentation: str) -> list[str]:
        """Validation of one row: errors raise (non-ASCII, '_'), vocabulary warnings are returned."""
        for what, value in zip(LABELS, (period, composer, instrumentation)):
            if value and not value.isascii():
                raise PromptError(f"{what} {value!r} must be ASCII (e.g. 'Dvorak, Antonin')")
        prompt = Prompt(clean_label(period, "period") or "Unknown", clean_label(composer, "composer") or "Unknown",
                        clean_label(instrumentation, "instrumentation") or "Unknown")
        return vocabulary_warnings(prompt)

    def save_labels(self, name: str, rows: list[PieceLabels]) -> int:
        """Rewrite the headers of the pieces whose labels changed; returns how many changed."""
        folder = self.folder(name)
        current = load_manifest(folder)["pieces"]
        labels = {}
        for row in rows:
            if row.piece not in current:
                raise DatasetError(f"dataset {name!r} has no piece {row.piece!r}")
            values = [str(getattr(row, k) or "").strip() for k in LABELS]
            self.check_labels(*values)
            if values != [current[row.piece][k] for k in LABELS]:
                labels[row.piece] = Labels(*(v or None for v in values))
        if labels:
            reannotate(folder, labels)
        return len(labels)

    def suggestions(self, name: str) -> dict[str, Labels]:
        """The score's own suggestion per piece (from the build), for 'apply suggestions'."""
        pieces = load_manifest(self.folder(name))["pieces"]
        out = {}
        for piece, e in pieces.items():
            s = e.get("suggested") or {}
            out[piece] = Labels(*(s.get(k) or None for k in LABELS)) if isinstance(s, dict) else Labels()
        return out

    def piece_abc(self, name: str, piece: str) -> str:
        folder = self.folder(name)
        if piece not in load_manifest(folder)["pieces"]:
            raise DatasetError(f"dataset {name!r} has no piece {piece!r}")
        return interleaved_path(folder, piece).read_text(encoding="utf-8")
