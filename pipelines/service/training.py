"""The training service: a run as a checked spec, starting and resuming it as a job, its log and a VRAM estimate.

A new run's settings mirror `TrainConfig` (their one home). A resumed run is the run's
saved config.json as a whole (`TrainConfig.from_dict`), so whatever the run was started
with, from the CLI or the studio (a frozen patch decoder, a dropout, betas, ...), it goes
on with; only what belongs to this studio is replaced: the workspace's folders for the
dataset, the run and the models, the base model's file, and the device.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from pipelines.errors import TrainingError
from pipelines.fields import same_as
from pipelines.model.notagenx import is_notagenx_name
from pipelines.service.datasets import DatasetService
from pipelines.service.jobs import Job, JobContext, JobQueue, Runner
from pipelines.service.models import NOTAGENX, ModelService
from pipelines.service.settings import Settings
from pipelines.service.specs import JobResult, check_spec
from pipelines.service.workspace import Workspace, check_name
from pipelines.training.config import TrainConfig
from pipelines.training.loop import train
from pipelines.training.memory import estimate_step_memory
from pipelines.training.runlog import read_train_log

KIND = "train"
LAST = "last.pth"


@dataclass
class TrainingSpec:
    """A new run: its dataset and name, where its weights start (a listed model, or a preset), and its schedule."""

    dataset: str
    run: str
    base: str = ""  # a model ref; "": train from scratch with `preset`
    preset: str = ""
    epochs: int = same_as(TrainConfig, "epochs")
    max_steps: int = same_as(TrainConfig, "max_steps")
    lr: float | None = same_as(TrainConfig, "lr")  # None: the config's rate for fine-tuning or from scratch
    batch_size: int = same_as(TrainConfig, "batch_size")
    grad_accum: int = same_as(TrainConfig, "grad_accum")
    warmup_steps: int = same_as(TrainConfig, "warmup_steps")
    schedule: str = same_as(TrainConfig, "schedule")
    patience: int = same_as(TrainConfig, "patience")
    lora_rank: int = same_as(TrainConfig, "lora_rank")
    seed: int = same_as(TrainConfig, "seed")
    key_augment: bool = same_as(TrainConfig, "key_augment")
    save_every: int = same_as(TrainConfig, "save_every")

    def __post_init__(self):
        self.dataset, self.run = (self.dataset or "").strip(), (self.run or "").strip()
        self.base, self.preset = self.base or "", self.preset or ""
        if self.lr is not None and not self.lr:
            self.lr = None  # the studio's 0: the config's own rate
        check_spec(self)
        check_name(self.run, "run name")
        if bool(self.base) == bool(self.preset):
            raise TrainingError("choose a base model to fine-tune, or a size to train from scratch (not both)")

    def schedule_fields(self) -> dict:
        """The TrainConfig fields this spec sets."""
        return {k: v for k, v in asdict(self).items() if k not in ("dataset", "run", "base", "preset")}


@dataclass(frozen=True)
class TrainingResult(JobResult):
    status: str  # finished | early_stopped | max_steps | cancelled
    step: int
    epoch: int
    best_eval_loss: float | None
    best: str  # workspace-relative best.pth, "" when none was saved
    run: str  # workspace-relative run folder


def progress_line(step: dict) -> str:
    """A step record of the run log as the job's status line: "step 3 of 10, loss 2.346" (the job's
    progress bar says the time left)."""
    return f"step {step['step']} of {step['total_steps']}, loss {step['loss']:.3f}"


class TrainingService:
    def __init__(self, workspace: Workspace, settings: Settings, jobs: JobQueue, models: ModelService,
                 datasets: DatasetService):
        self.workspace = workspace
        self.settings = settings
        self.jobs = jobs
        self.models = models
        self.datasets = datasets
        jobs.register(KIND, Runner("gpu", self.run))

    # -- configs
    def run_folder(self, run: str, must_exist: bool = False) -> Path:
        return self.workspace.path("runs", check_name(run, "run name"), must_exist=must_exist)

    def base_file(self, ref: str) -> str:
        """What TrainConfig.base takes for a model ref: NotaGen-X by name, any other model by its file."""
        return NOTAGENX if ref == NOTAGENX else str(self.models.path(ref))

    def config(self, spec: TrainingSpec) -> TrainConfig:
        """The TrainConfig of a new run."""
        return TrainConfig(data_dir=self.datasets.folder(spec.dataset), out_dir=self.run_folder(spec.run),
                           base=self.base_file(spec.base) if spec.base else None, preset=spec.preset or None,
                           models_dirs=[self.workspace.area("models")], device=self.settings.device,
                           **spec.schedule_fields())

    def resume_config(self, run: str) -> TrainConfig:
        """The TrainConfig that resumes a run: its saved config.json, in this workspace, on this studio's device."""
        folder = self.run_folder(run, must_exist=True)
        path = folder / "config.json"
        if not path.is_file():
            raise TrainingError(f"run {run!r} has no config.json")
        try:
            saved = TrainConfig.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (json.JSONDecodeError, UnicodeDecodeError, TypeError) as e:
            raise TrainingError(f"run {run!r}: its config.json cannot be read ({e})") from None
        base = saved.base
        if base and not is_notagenx_name(base):
            base = self.base_file(self.models.ref_of(base))
        return dataclasses.replace(saved, data_dir=self.datasets.folder(saved.data_dir.name), out_dir=folder,
                                   base=base, models_dirs=[self.workspace.area("models")],
                                   device=self.settings.device, resume=True)

    # -- jobs
    def submit(self, spec: TrainingSpec) -> Job:
        config = self.config(spec)
        if (config.out_dir / LAST).is_file():
            raise TrainingError(f"run {spec.run!r} exists; resume it or choose another run name")
        return self.jobs.submit(KIND, config.to_dict(), f"train {spec.run}")

    def resume(self, run: str) -> Job:
        config = self.resume_config(run)
        if not (config.out_dir / LAST).is_file():
            raise TrainingError(f"run {run!r} has nothing to resume (no {LAST})")
        return self.jobs.submit(KIND, config.to_dict(), f"train {run} (resumed)")

    @staticmethod
    def result(job: Job) -> TrainingResult:
        return TrainingResult.from_dict(job.result)

    @staticmethod
    def run_of(job: Job) -> str:
        """The run name a training job writes to."""
        return Path(job.params.get("out_dir", "")).name

    def run(self, ctx: JobContext) -> dict:
        config = TrainConfig.from_dict(ctx.params)
        if not config.out_dir.resolve().is_relative_to(self.workspace.area("runs")):
            raise TrainingError(f"{config.out_dir}: a studio run lives in the workspace's runs folder")
        self.models.unload()  # the card holds one model at a time
        ctx.say("starting")

        def on_log(record: dict) -> None:
            if record.get("event") == "step":
                ctx.say(progress_line(record), stage="training")

        result = train(config, on_log=on_log, on_progress=ctx.progress, should_stop=ctx.should_stop)
        rel = self.workspace.relative
        return TrainingResult(status=result.status, step=result.step, epoch=result.epoch,
                              best_eval_loss=result.best_eval_loss,
                              best=rel(result.best_path) if result.best_path else "",
                              run=rel(config.out_dir)).to_dict()

    # -- queries
    def runs(self) -> list[str]:
        return self.workspace.folders("runs")

    def log(self, run: str) -> list[dict]:
        """The run's train_log.jsonl records ([] before its first record)."""
        log = self.run_folder(run, must_exist=True) / "train_log.jsonl"
        return read_train_log(log) if log.is_file() else []

    def memory(self, base: str, preset_name: str, batch_size: int, lora_rank: int) -> str:
        """A rough VRAM estimate of one step (weights, gradients, AdamW states, activations)."""
        config = self.models.config(base, preset_name)
        return estimate_step_memory(config, sequences=max(1, int(batch_size)), lora_rank=int(lora_rank or 0)).describe()
