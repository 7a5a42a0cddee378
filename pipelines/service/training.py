"""The training service: a run as a checked spec, starting and resuming it as a job, its log, what state a run
name is in, and estimates of a run's memory and time.

A new run's settings mirror `TrainConfig` (their one home). A resumed run is the run's
saved config.json as a whole (`TrainConfig.from_dict`), so whatever the run was started
with, from the CLI or the studio (a frozen patch decoder, a dropout, betas, ...), it goes
on with; only what belongs to this studio is replaced: the workspace's folders for the
dataset, the run and the models, the base model's file, and the device.

A run's time is its steps (as the loop counts them) times the seconds a step takes: measured,
where an earlier run in this workspace trained the same model with the same batch on this
kind of device (its log's chars per second, applied to this dataset's pieces), else a rough
documented pace (`FALLBACK_PACE`). On a CPU the studio proposes a step limit that ends a run
in about `CPU_BUDGET_S` (`fitted_max_steps`); on a GPU the config's defaults stand.
"""
from __future__ import annotations

import dataclasses
import json
import math
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path

from pipelines.errors import NotaGenError, TrainingError
from pipelines.fields import same_as
from pipelines.model.network import count_parameters
from pipelines.model.notagenx import is_notagenx_name
from pipelines.model.runtime import pick_device
from pipelines.service.datasets import DatasetService
from pipelines.service.jobs import Job, JobContext, JobQueue, Runner, duration
from pipelines.service.models import NOTAGENX, ModelService
from pipelines.service.settings import Settings
from pipelines.service.specs import JobResult, check_spec
from pipelines.service.workspace import Workspace, check_name
from pipelines.training.config import TrainConfig
from pipelines.training.data import epoch_groups, piece_file, read_split
from pipelines.training.loop import train
from pipelines.training.memory import estimate_step_memory
from pipelines.training.runlog import LOG_NAME, read_train_log

KIND = "train"
LAST = "last.pth"
# How a run ended, in words (TrainingResult.status); the first three leave nothing to resume.
ENDINGS = {"finished": "finished", "early_stopped": "stopped early (the eval loss stopped improving)",
           "max_steps": "stopped at the step limit", "cancelled": "cancelled"}
ENDED = ("finished", "early_stopped", "max_steps")
CPU_BUDGET_S = 300.0  # a run the studio proposes on a CPU ends in about five minutes
# Seconds of one optimizer step per char of its pieces and per million parameters of the model, where no earlier run
# of this workspace measured the pace. Rough figures: "cpu", the demo model (7.9 M parameters) fine-tuned on Bach
# chorales on a 2-core CPU shared with other work, about 150 chars/s; "cuda", NotaGen-X (516 M) fully fine-tuned
# on an H100, a 16,400-char sample in 0.105 s (benchmarks/README.md). A step takes at least `MIN_STEP_S`.
FALLBACK_PACE = {"cpu": 8.4e-4, "cuda": 1.2e-8}
MIN_STEP_S = {"cpu": 0.05, "cuda": 0.03}


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


@dataclass(frozen=True)
class TrainingPlan:
    """How long a run would take: its steps and, where a pace is known, the seconds a step takes."""

    steps: int  # optimizer steps, at most (early stopping may end the run sooner)
    steps_per_epoch: int
    seconds_per_step: float | None  # None: no pace is known for this device
    pace: str  # where seconds_per_step comes from, in words
    device: str  # the device type the run would train on: "cpu", "cuda", "mps"

    @property
    def seconds(self) -> float | None:
        return None if self.seconds_per_step is None else self.steps * self.seconds_per_step

    def steps_within(self, seconds: float) -> int:
        """The most steps that end within `seconds` (at least 1); all of them when no pace is known."""
        if not self.seconds_per_step:
            return self.steps
        return max(1, min(self.steps, int(seconds // self.seconds_per_step)))

    def describe(self) -> str:
        """"about 4 min 10 s on the CPU: 30 steps (5 an epoch), about 8.4 s a step (measured in run 'a')"."""
        where = "the CPU" if self.device == "cpu" else f"the GPU ({self.device})" if self.device == "cuda" \
            else self.device
        steps = f"{self.steps} steps ({self.steps_per_epoch} an epoch)"
        if self.seconds is None:
            return f"{steps} on {where}; no pace is known for it yet: the first steps show the time"
        per_step = f"{self.seconds_per_step:.1f} s" if self.seconds_per_step >= 0.1 else \
            f"{self.seconds_per_step * 1000:.0f} ms"
        return f"{duration(self.seconds)} on {where}: {steps}, about {per_step} a step ({self.pace})"


@dataclass(frozen=True)
class RunState:
    """What a run name can do now: start a new run, resume one, or neither (and why)."""

    run: str
    state: str  # new | resumable | ended | active (queued or training now) | invalid (not a usable name)
    note: str  # a sentence for the musician ("" for a new name)

    @property
    def can_start(self) -> bool:
        return self.state == "new"

    @property
    def can_resume(self) -> bool:
        return self.state == "resumable"


def last_record(log: Path) -> dict | None:
    """The last complete record of a run log, read from its end (a log grows by a record a step)."""
    with log.open("rb") as f:
        f.seek(0, 2)
        f.seek(max(0, f.tell() - 8192))
        tail = f.read().decode("utf-8", errors="replace")
    for line in reversed(tail.split("\n")):  # a cut first line or a last one still being written does not parse
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            continue
    return None


class TrainingService:
    def __init__(self, workspace: Workspace, settings: Settings, jobs: JobQueue, models: ModelService,
                 datasets: DatasetService):
        self.workspace = workspace
        self.settings = settings
        self.jobs = jobs
        self.models = models
        self.datasets = datasets
        jobs.register(KIND, Runner("gpu", self.run))
        self._paces: dict[tuple, tuple[str, int, float] | None] = {}  # run log's (path, size, mtime) -> its pace

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

    def run_state(self, run: str) -> RunState:
        """Whether `run` names a new run, one that can be resumed, one that ended, or one training now."""
        try:
            folder = self.run_folder(run)
        except NotaGenError as e:
            return RunState(run, "invalid", str(e))
        active = [j for j in self.jobs.list(200) if j.kind == KIND and not j.is_finished and self.run_of(j) == run]
        if active:
            return RunState(run, "active", f"run {run!r} is {'training' if active[0].state == 'running' else 'waiting'}"
                                           " now; follow it here or cancel it")
        if not (folder / LAST).is_file():
            return RunState(run, "new", "")
        log = folder / LOG_NAME
        last = last_record(log) if log.is_file() else None
        step = (last or {}).get("step", "?")
        if last and last.get("event") == "end" and last.get("status") in ENDED:
            return RunState(run, "ended", f"run {run!r} {ENDINGS[last['status']]} after {step} steps; choose "
                                          "another name for a new run")
        how = "was cancelled" if last and last.get("event") == "end" else "stopped before its end"
        return RunState(run, "resumable", f"run {run!r} {how} at step {step}; Resume goes on from its last "
                                          "checkpoint with its saved settings")

    def plan(self, dataset: str, base: str, preset_name: str, epochs: int, max_steps: int, batch_size: int,
             grad_accum: int, lora_rank: int) -> TrainingPlan:
        """The steps of a run as the loop counts them and, where a pace is known, how long they take."""
        data = self.datasets.folder(dataset)
        pieces = read_split(data, "train")
        if not pieces:
            raise TrainingError(f"dataset {dataset!r} has no pieces to train on")
        batch_size, grad_accum = max(1, int(batch_size)), max(1, int(grad_accum))
        per_epoch = len(epoch_groups(list(range(len(pieces))), batch_size, grad_accum))
        steps = max(1, int(epochs)) * per_epoch
        steps = min(steps, int(max_steps)) if max_steps else steps
        config = self.models.config(base, preset_name)
        longest = config.patch_length * config.patch_size  # a longer piece is cut to the model's context
        sizes = [min(p.stat().st_size, longest) for p in (piece_file(data, piece, piece.key) for piece in pieces)
                 if p.is_file()]
        chars = batch_size * grad_accum * (statistics.fmean(sizes) if sizes else longest)
        device = pick_device(self.settings.device).type
        measured = self._measured_pace(base, preset_name, batch_size, lora_rank, device)
        if measured:
            run, chars_per_s = measured
            return TrainingPlan(steps, per_epoch, chars / chars_per_s, f"measured in run {run!r}", device)
        if device not in FALLBACK_PACE:
            return TrainingPlan(steps, per_epoch, None, "", device)
        # a LoRA step still runs forward and backward through the whole model: its pace is the model's
        per_step = max(MIN_STEP_S[device], FALLBACK_PACE[device] * chars * count_parameters(config) / 1e6)
        return TrainingPlan(steps, per_epoch, per_step, "a rough figure: no run of this model and batch "
                                                        "was measured here yet", device)

    @staticmethod
    def fit_to_machine(plan: TrainingPlan, warmup_steps: int) -> tuple[int, int]:
        """(max steps, warm-up steps) the studio proposes for `plan`: on a CPU, when the run would take longer
        than CPU_BUDGET_S, the steps that end in about that time and a warm-up of a tenth of them (a warm-up
        longer than the run would never reach the peak rate); else no step limit and `warmup_steps`."""
        if plan.device != "cpu" or plan.seconds is None or plan.seconds <= CPU_BUDGET_S:
            return 0, warmup_steps
        steps = plan.steps_within(CPU_BUDGET_S)
        return steps, min(warmup_steps, steps // 10)

    def _measured_pace(self, base: str, preset_name: str, batch_size: int, lora_rank: int,
                       device: str) -> tuple[str, float] | None:
        """(run, median chars per second) of the newest earlier run of the same model, batch and LoRA rank on
        this kind of device; None when there is none."""
        want_base = self.base_file(base) if base else None
        found = []
        for run in self.runs():
            folder = self.workspace.area("runs") / run
            try:
                saved = json.loads((folder / "config.json").read_text(encoding="utf-8"))
                log = folder / LOG_NAME
                stat = log.stat()
            except (OSError, json.JSONDecodeError, UnicodeDecodeError):
                continue
            same_model = (saved.get("preset") == preset_name if not base
                          else saved.get("base") and _same_file(saved["base"], want_base))
            if not same_model or saved.get("batch_size") != batch_size or saved.get("lora_rank", 0) != lora_rank:
                continue
            key = (str(log), stat.st_size, stat.st_mtime_ns)
            if key not in self._paces:
                self._paces[key] = _log_pace(log)
            pace = self._paces[key]
            if pace and pace[0] == device:
                found.append((stat.st_mtime, run, pace[1]))
        if not found:
            return None
        _, run, chars_per_s = max(found)
        return run, chars_per_s

    def memory(self, base: str, preset_name: str, batch_size: int, lora_rank: int) -> str:
        """A rough VRAM estimate of one step (weights, gradients, AdamW states, activations)."""
        config = self.models.config(base, preset_name)
        return estimate_step_memory(config, sequences=max(1, int(batch_size)), lora_rank=int(lora_rank or 0)).describe()


def _same_file(saved: str, wanted: str | None) -> bool:
    if wanted is None:
        return False
    if is_notagenx_name(saved) or is_notagenx_name(wanted):
        return is_notagenx_name(saved) and is_notagenx_name(wanted)
    return Path(saved).resolve() == Path(wanted).resolve()


def _log_pace(log: Path) -> tuple[str, float] | None:
    """(device type, median chars per second of its steps) of a run log; None without steps."""
    try:
        records = read_train_log(log)
    except TrainingError:
        return None
    starts = [r for r in records if r.get("event") in ("start", "resume")]
    rates = [r["chars_per_s"] for r in records if r.get("event") == "step"
             and isinstance(r.get("chars_per_s"), (int, float)) and math.isfinite(r["chars_per_s"])
             and r["chars_per_s"] > 0]
    if not starts or not rates:
        return None
    return str(starts[-1].get("device", "")).split(":")[0], statistics.median(rates)
