"""The DPO service: a CLaMP-DPO run as a checked spec and its job, the library's ratings as human preferences,
and what a run left behind (mean scores, the chosen and rejected pieces).

The run's settings mirror `DPOConfig` (their one home).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from pipelines.abc.prompts import parse_prompt
from pipelines.dpo.config import DPOConfig
from pipelines.dpo.loop import run_dpo
from pipelines.dpo.memory import estimate_dpo_memory
from pipelines.dpo.preference import HumanRating
from pipelines.errors import DPOError
from pipelines.fields import same_as
from pipelines.service.datasets import DatasetService
from pipelines.service.jobs import Job, JobContext, JobQueue, Runner
from pipelines.service.library import Library
from pipelines.service.models import ModelService
from pipelines.service.settings import Settings
from pipelines.service.specs import JobResult, check_spec, from_params
from pipelines.service.workspace import Workspace, check_name, inside

KIND = "dpo"
LIBRARY_PIECE = "library-"  # the name of a rated library piece among a run's pairs: library-<id>
# The DPOConfig fields a spec carries (the rest keep the config's defaults).
SETTINGS = ("iterations", "samples", "portion", "scorer", "beta", "lam", "steps", "lr", "top_k", "top_p",
            "temperature", "generation_batch", "max_patches", "max_seconds", "seed")


@dataclass
class DPOSpec:
    """One DPO run: the model to improve, the dataset (prompts and reference pieces), the run name and scorer."""

    model: str
    dataset: str
    run: str
    clamp2: str = ""  # CLaMP 2 weights, a model ref in models/ (the clamp2 scorer only)
    use_ratings: bool = True  # the library's thumbs up / down join the scorer's pairs
    iterations: int = same_as(DPOConfig, "iterations")
    samples: int = same_as(DPOConfig, "samples")
    portion: float = same_as(DPOConfig, "portion")
    scorer: str = same_as(DPOConfig, "scorer")
    beta: float = same_as(DPOConfig, "beta")
    lam: float = same_as(DPOConfig, "lam")
    steps: int = same_as(DPOConfig, "steps")
    lr: float = same_as(DPOConfig, "lr")
    top_k: int = same_as(DPOConfig, "top_k")
    top_p: float = same_as(DPOConfig, "top_p")
    temperature: float = same_as(DPOConfig, "temperature")
    generation_batch: int = same_as(DPOConfig, "generation_batch")
    max_patches: int = same_as(DPOConfig, "max_patches")
    max_seconds: float = same_as(DPOConfig, "max_seconds")
    seed: int = same_as(DPOConfig, "seed")

    def __post_init__(self):
        self.model, self.dataset, self.run = (self.model or "").strip(), (self.dataset or ""), (self.run or "")
        self.clamp2 = (self.clamp2 or "") if self.scorer == "clamp2" else ""
        self.use_ratings = bool(self.use_ratings)
        check_spec(self)
        check_name(self.run, "run name")

    def settings(self) -> dict:
        return {k: getattr(self, k) for k in SETTINGS}


@dataclass(frozen=True)
class DPOResult(JobResult):
    status: str  # finished | cancelled
    mean_scores: list[float | None]  # of each iteration's pieces, then the final model's
    final_model: str  # workspace-relative when inside the workspace, else the file's name


@dataclass(frozen=True)
class DPOPairs:
    chosen: list[str]  # piece names
    rejected: list[str]


def progress_line(record: dict, config: DPOConfig) -> str | None:
    """What a run is doing now, from one of its log records; None for a record that changes nothing shown."""
    event, k = record.get("event"), record.get("iteration")
    if event == "generate":
        return f"iteration {k} of {config.iterations}: writing {record.get('samples')} pieces"
    if event == "scored":
        mean = record.get("mean_score")
        scored = "" if mean is None else f", mean score {mean:.3f}"
        return f"iteration {k}: {record.get('ok')} of {record.get('generated')} pieces usable{scored}"
    if event == "step":
        return f"iteration {k}: learning from the pairs, step {record.get('step')} of {config.steps}"
    if event == "iteration":
        scoring_final = k == config.iterations and config.scorer != "none" and config.score_final
        return (f"iteration {k} done; the final model is writing pieces to be scored" if scoring_final
                else f"iteration {k} done")
    if event == "final":
        return "the final model's pieces are scored"
    return None


class DPOService:
    def __init__(self, workspace: Workspace, settings: Settings, jobs: JobQueue, models: ModelService,
                 datasets: DatasetService, library: Library):
        self.workspace = workspace
        self.settings = settings
        self.jobs = jobs
        self.models = models
        self.datasets = datasets
        self.library = library
        jobs.register(KIND, Runner("gpu", self.run))

    def config(self, spec: DPOSpec) -> DPOConfig:
        clamp2 = self.models.path(spec.clamp2) if spec.clamp2 else None
        return DPOConfig(model=self.models.path(spec.model), data_dir=self.datasets.folder(spec.dataset),
                         out_dir=self.workspace.path("runs", check_name(spec.run, "run name")),
                         clamp2_weights=clamp2, device=self.settings.device, **spec.settings())

    def human_ratings(self) -> list[HumanRating]:
        """The library's thumbs up / down as DPO's human preference records (name: library-<id>)."""
        return [HumanRating(abc=r.abc, rating=r.rating, prompt=parse_prompt(r.prompt), name=f"{LIBRARY_PIECE}{r.id}")
                for r in self.library.preference_records()]

    def submit(self, spec: DPOSpec) -> Job:
        config = self.config(spec)
        if config.scorer == "none" and not (spec.use_ratings and self.library.preference_records()):
            raise DPOError("without a scorer, DPO learns only from rated pieces: rate some in the Library "
                           "or Generate tab, and keep 'use my ratings' on")
        return self.jobs.submit(KIND, asdict(spec), f"DPO {spec.run}")

    @staticmethod
    def result(job: Job) -> DPOResult:
        return DPOResult.from_dict(job.result)

    @staticmethod
    def run_of(job: Job) -> str:
        return str(job.params.get("run", ""))

    def run(self, ctx: JobContext) -> dict:
        spec = from_params(DPOSpec, ctx.params)
        config = self.config(spec)
        self.models.unload()
        ratings = self.human_ratings() if spec.use_ratings else []

        def on_log(record: dict) -> None:
            line = progress_line(record, config)
            if line:
                ctx.say(line)

        result = run_dpo(config, ratings=ratings, on_log=on_log, on_progress=ctx.progress,
                         should_stop=ctx.should_stop)
        final = result.final_model
        shown = (self.workspace.relative(final) if final.resolve().is_relative_to(self.workspace.root)
                 else final.name)
        return DPOResult(status=result.status, mean_scores=list(result.mean_scores), final_model=shown).to_dict()

    # -- queries
    def run_folder(self, run: str) -> Path:
        return self.workspace.path("runs", check_name(run, "run name"), must_exist=True)

    def mean_scores(self, run: str) -> list[float | None]:
        """The mean score of each iteration's pieces, then the final model's (None until scored), from the run's
        summary.json ([] before the first iteration has finished)."""
        path = self.run_folder(run) / "summary.json"
        return list(json.loads(path.read_text(encoding="utf-8")).get("mean_scores") or []) if path.is_file() else []

    def pairs(self, run: str, iteration: int) -> DPOPairs:
        """Names of the chosen and rejected pieces of one iteration."""
        path = inside(self.run_folder(run), f"iter_{int(iteration)}/preference.json")
        if not path.is_file():
            return DPOPairs([], [])
        data = json.loads(path.read_text(encoding="utf-8"))
        return DPOPairs(*([c["name"] for c in data.get(k, [])] for k in ("chosen", "rejected")))

    def piece(self, run: str, iteration: int, name: str) -> str:
        """The ABC of a piece of a DPO pair: a generated sample, or a rated library piece."""
        number = name[len(LIBRARY_PIECE):]
        if name.startswith(LIBRARY_PIECE) and number.isdigit():
            entry = self.library.get(int(number))
            return entry.abc or entry.raw
        return inside(self.run_folder(run), f"iter_{int(iteration)}/samples/{check_name(name, 'piece name')}.abc",
                      must_exist=True).read_text(encoding="utf-8")

    def memory(self, model: str) -> str:
        return estimate_dpo_memory(self.models.card(model)[1].config).describe()
