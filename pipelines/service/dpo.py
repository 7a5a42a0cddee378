"""The DPO service: a CLaMP-DPO run as a checked spec and its job, the library's judgements (thumbs up / down and
"A is better than B") as human preferences,
the settings sized to this machine with how long they may take, and what a run left behind (per model the share
of pieces that end, the share usable and the mean score; the chosen and rejected pieces).

The run's settings mirror `DPOConfig` (their one home); their sizes per device are `sized_settings`'s.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pipelines.abc.prompts import parse_prompt
from pipelines.dpo.config import DPOConfig, sized_settings
from pipelines.dpo.estimate import Rates, estimate_dpo_time, measured_rates
from pipelines.dpo.loop import SUMMARY, run_dpo
from pipelines.dpo.memory import estimate_dpo_memory
from pipelines.dpo.preference import HumanJudgement, HumanPair, HumanRating, describe_judgements
from pipelines.errors import DPOError
from pipelines.fields import same_as
from pipelines.model.network import count_parameters
from pipelines.service.datasets import DatasetService
from pipelines.service.jobs import Job, JobContext, JobQueue, Runner
from pipelines.service.library import Library
from pipelines.service.models import ModelService
from pipelines.service.settings import Settings
from pipelines.service.specs import JobResult, check_spec, from_params
from pipelines.service.workspace import Workspace, check_name, inside
from pipelines.training.recipe import resolve_device

KIND = "dpo"
LIBRARY_PIECE = "library-"  # the name of a rated or judged library piece among a run's pairs: library-<id>
# The DPOConfig fields a spec carries (the rest keep the config's defaults).
SETTINGS = ("iterations", "samples", "portion", "min_pairs", "score_final", "keep_best", "scorer", "beta", "lam", "steps",
            "steps_per_pair", "lr", "top_k", "top_p", "temperature", "generation_batch", "max_patches", "max_seconds",
            "seed")


@dataclass
class DPOSpec:
    """One DPO run: the model to improve, the dataset (prompts and reference pieces), the run name and scorer."""

    model: str
    dataset: str
    run: str
    clamp2: str = ""  # CLaMP 2 weights, a model ref in models/ (the clamp2 scorer only)
    use_ratings: bool = True  # the library's judgements (thumbs, pairwise) join the scorer's pairs
    iterations: int = same_as(DPOConfig, "iterations")
    samples: int = same_as(DPOConfig, "samples")
    portion: float = same_as(DPOConfig, "portion")
    min_pairs: int = same_as(DPOConfig, "min_pairs")
    score_final: bool = same_as(DPOConfig, "score_final")
    keep_best: bool = same_as(DPOConfig, "keep_best")
    scorer: str = same_as(DPOConfig, "scorer")
    beta: float = same_as(DPOConfig, "beta")
    lam: float = same_as(DPOConfig, "lam")
    steps: int = same_as(DPOConfig, "steps")
    steps_per_pair: float = same_as(DPOConfig, "steps_per_pair")
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
        self.score_final, self.keep_best = bool(self.score_final), bool(self.keep_best)
        check_spec(self)
        check_name(self.run, "run name")

    def settings(self) -> dict:
        return {k: getattr(self, k) for k in SETTINGS}


@dataclass(frozen=True)
class DPOResult(JobResult):
    status: str  # finished | stopped (too few pairs) | cancelled
    mean_scores: list[float | None]  # of each iteration's pieces, then the final model's
    final_model: str  # workspace-relative when inside the workspace, else the file's name
    message: str = ""  # why the run stopped early; which model keep-best kept


@dataclass(frozen=True)
class DPOPairs:
    chosen: list[str]  # piece names
    rejected: list[str]
    reasons: dict[str, str] = field(default_factory=dict)  # name -> why it was chosen or rejected


@dataclass(frozen=True)
class ModelFigures:
    """One measured model of a run: its sample's shares and mean score, the pairs of the iteration that made it."""

    label: str  # "starting model", "after iteration 1", ...
    pieces: int  # 0: not measured (the last model without a final sample)
    ended_share: float | None  # None: not measured
    usable_share: float | None
    mean_score: float | None
    pairs: int | None  # None for the starting model
    lowered_usable: bool  # the iteration that made it lowered the usable share


@dataclass(frozen=True)
class DPOReport:
    status: str  # running | finished | stopped | cancelled; "" before the first measurement
    message: str
    models: list[ModelFigures]


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

    def human_judgements(self) -> list[HumanJudgement]:
        """The library's thumbs up / down and pairwise judgements as DPO's human preferences (a piece's name:
        library-<id>)."""
        rated = [HumanRating(abc=r.abc, rating=r.rating, prompt=parse_prompt(r.prompt), name=f"{LIBRARY_PIECE}{r.id}")
                 for r in self.library.preference_records()]
        return rated + [HumanPair(r.better_abc, r.worse_abc, parse_prompt(r.prompt), f"{LIBRARY_PIECE}{r.better}",
                                  f"{LIBRARY_PIECE}{r.worse}") for r in self.library.pairwise_records()]

    def judgements_line(self) -> str:
        """What the library holds for DPO, e.g. "2 pieces rated up, 0 rated down and 3 pairwise judgements"."""
        return describe_judgements(self.human_judgements())

    def submit(self, spec: DPOSpec) -> Job:
        config = self.config(spec)
        if config.scorer == "none" and not (spec.use_ratings and self.human_judgements()):
            raise DPOError("without a scorer, DPO learns only from your judgements: rate pieces or judge one "
                           "better than another in the Library tab, and keep 'use my judgements' on (the library "
                           f"holds {self.judgements_line()})")
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
        ratings = self.human_judgements() if spec.use_ratings else []

        def on_log(record: dict) -> None:
            if record.get("text") and record["event"] != "end":  # each stage in words; its progress follows
                ctx.say(record["text"])

        result = run_dpo(config, ratings=ratings, on_log=on_log, on_progress=ctx.progress,
                         should_stop=ctx.should_stop)
        final = result.final_model
        shown = (self.workspace.relative(final) if final.resolve().is_relative_to(self.workspace.root)
                 else final.name)
        return DPOResult(status=result.status, mean_scores=list(result.mean_scores), final_model=shown,
                         message=result.message).to_dict()

    # -- sizes and estimates
    def device_type(self) -> str:
        """"cuda", "cpu" or "mps": where the studio's settings send a run."""
        return resolve_device(self.settings.device).type

    def defaults(self) -> dict:
        """The spec's settings sized to this machine (`sized_settings`): on a CPU, a run of a minute or two."""
        sized = sized_settings(self.device_type())
        return {name: sized[name] for name in SETTINGS}

    def last_rates(self, device_type: str) -> Rates | None:
        """The speeds the newest run on this kind of device measured (None where none did)."""
        summaries = [p for p in self.workspace.area("runs").glob(f"*/{SUMMARY}") if p.is_file()]
        for path in sorted(summaries, key=lambda p: p.stat().st_mtime, reverse=True):
            try:
                summary = json.loads(path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
            if (summary.get("rates") or {}).get("device") == device_type:
                rates = measured_rates(summary)
                if rates is not None:
                    return rates
        return None

    def estimate(self, model: str, **settings) -> str:
        """How long a run may take (on a GPU also the memory of one step), in words. `settings`: spec fields by
        name; those not given are this machine's defaults. Refuses values the spec refuses."""
        config = self.models.card(model)[1].config
        device = self.device_type()
        given = {**self.defaults(), **{k: v for k, v in settings.items() if k in SETTINGS and v is not None}}
        checked = DPOSpec(model=model, dataset="", run="estimate", **given).settings()
        merged = {**sized_settings(device), **checked}
        line = "Estimate: " + estimate_dpo_time(merged, count_parameters(config), config.patch_length, device,
                                                self.last_rates(device)).text + "."
        if merged["scorer"] == "none":
            line += f" Without a scorer it learns from your library's {self.judgements_line()}."
        if device == "cuda":
            line += f" VRAM for one DPO step: {estimate_dpo_memory(config).describe()}."
        return line

    # -- queries
    def run_folder(self, run: str) -> Path:
        return self.workspace.path("runs", check_name(run, "run name"), must_exist=True)

    def report(self, run: str) -> DPOReport:
        """Per measured model of a run (its summary.json): the share of its pieces that end, the share usable, the
        mean score, and the pairs of the iteration that made it. Empty before the first measurement."""
        path = self.run_folder(run) / SUMMARY
        if not path.is_file():
            return DPOReport("", "", [])
        summary = json.loads(path.read_text(encoding="utf-8"))
        iterations = [it for it in summary.get("iterations") or [] if it.get("checkpoint")]  # those that made one
        measured = summary.get("models") or []
        models = []
        for i in range(max(len(measured), len(iterations) + 1 if iterations else 0)):
            made_by = iterations[i - 1] if 0 < i <= len(iterations) else None
            pairs, lowered = (made_by["pairs"], bool(made_by.get("lowered_usable"))) if made_by else (None, False)
            if i < len(measured):
                m = measured[i]
                models.append(ModelFigures(m["label"], m["pieces"], m["ended_share"], m["usable_share"],
                                           m["mean_score"], pairs, lowered))
            else:  # a model no sample measured (the last one, without the final score)
                models.append(ModelFigures(f"after iteration {i}", 0, None, None, None, pairs, False))
        return DPOReport(summary.get("status", ""), summary.get("message", ""), models)

    def pairs(self, run: str, iteration: int) -> DPOPairs:
        """Names of the chosen and rejected pieces of one iteration, with why each was."""
        path = inside(self.run_folder(run), f"iter_{int(iteration)}/preference.json")
        if not path.is_file():
            return DPOPairs([], [])
        data = json.loads(path.read_text(encoding="utf-8"))
        sides = {k: data.get(k, []) for k in ("chosen", "rejected")}
        return DPOPairs([c["name"] for c in sides["chosen"]], [c["name"] for c in sides["rejected"]],
                        {c["name"]: c.get("reason", "") for side in sides.values() for c in side})

    def piece(self, run: str, iteration: int, name: str) -> str:
        """The ABC of a piece of a DPO pair: a generated sample, or a rated library piece. A sample that did not
        end has no score to show: refused with where its text is."""
        number = name[len(LIBRARY_PIECE):]
        if name.startswith(LIBRARY_PIECE) and number.isdigit():
            entry = self.library.get(int(number))
            return entry.abc or entry.raw
        samples = inside(self.run_folder(run), f"iter_{int(iteration)}/samples", must_exist=True)
        stem = check_name(name, "piece name")
        path, raw = samples / f"{stem}.abc", samples / f"{stem}.raw.abc"
        if not path.is_file() and raw.is_file():
            raise DPOError(f"{name} did not end or could not be post-processed, so it has no score to show; its text "
                           f"as written is in {self.workspace.relative(raw)}")
        return inside(samples, f"{stem}.abc", must_exist=True).read_text(encoding="utf-8")

    def memory(self, model: str) -> str:
        return estimate_dpo_memory(self.models.card(model)[1].config).describe()
