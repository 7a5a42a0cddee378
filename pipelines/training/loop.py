"""`train()`: fine-tune or train a NotaGen model on a studio dataset, on CPU, one GPU or many.

One code path for every setup: accelerate (or torchrun) starts the processes
(`accelerate launch --multi_gpu --num_processes N -m pipelines.cli train ...`),
accelerate places the model and wraps it in DDP; each process encodes its own
shard of every epoch.
The run folder holds:

- `last.pth`: the latest model with its full training state (model, optimizer,
  scheduler, scaler, every process's RNG states, epoch, step, position in the
  epoch's data order), written atomically after every epoch, every
  `save_every` steps and on cancel, so a run resumes exactly where it stopped;
- `best.pth`: the model with the lowest eval loss (no optimizer state);
- LoRA runs write both as small adapter files instead (see `lora.py`);
- `prompts.txt`: the model's prompt vocabulary (the base model's plus the dataset's); the model
  card also keeps, per prompt, the meters and keys it was trained on (the base model's record plus
  the dataset's `header_choices.json`);
- `train_log.jsonl` (see `runlog.py`) and `config.json`.
"""
from __future__ import annotations

import contextlib
import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.state import PartialState
from accelerate.utils import broadcast, gather_object

from pipelines.abc.prompts import Prompt, write_prompts
from pipelines.abc.tokenizer import Patchilizer
from pipelines.dataset.build import load_header_choices
from pipelines.errors import TrainingError
from pipelines.files import atomic_write_text
from pipelines.generation.header import merge_choices
from pipelines.model.checkpoint import ModelCard, load_checkpoint, save_checkpoint
from pipelines.model.config import preset
from pipelines.model.lora import (
    LoraSpec,
    base_record,
    is_adapter_file,
    load_model,
    load_with_adapter,
    save_adapter,
)
from pipelines.model.network import NotaGen, init_weights_like_gpt2
from pipelines.model.notagenx import resolve_base
from pipelines.model.registry import prompt_vocabulary
from pipelines.training.config import TrainConfig
from pipelines.training.data import (
    PieceEncoder,
    RunBatches,
    batch_stream,
    check_files,
    data_workers,
    dataset_prompts,
    epoch_groups,
    read_split,
    union_prompts,
)
from pipelines.training.evaluate import summed_loss
from pipelines.training.recipe import (
    Amp,
    build_optimizer,
    lora_spec,
    optimizer_step,
    prepare_model,
    resolve_device,
    resolve_precision,
)
from pipelines.training.runlog import LOG_NAME, RunLog
from pipelines.training.schedule import WarmupDecay, build_scheduler

LAST = "last.pth"
BEST = "best.pth"


@dataclass
class TrainResult:
    status: str  # finished | early_stopped | max_steps | cancelled
    step: int
    epoch: int  # epochs completed
    best_eval_loss: float | None
    best_path: Path | None
    last_path: Path
    log_path: Path
    prompts_path: Path


# ---------------------------------------------------------------- RNG state

def capture_rng() -> dict:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": random.getstate(),
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
    }


def restore_rng(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ---------------------------------------------------------------- setup

def make_accelerator(device: torch.device) -> Accelerator:
    """Mixed precision is ours (the benchmark shares it), so accelerate runs with `mixed_precision='no'`."""
    cpu = device.type == "cpu"
    state = PartialState._shared_state
    if state and state.get("device") is not None and state["device"].type != device.type \
            and PartialState().num_processes == 1:
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state(reset_partial_state=True)  # a single process switching devices
    if device.type == "cuda" and device.index is not None and PartialState._shared_state == {}:
        torch.cuda.set_device(device.index)
    return Accelerator(cpu=cpu, mixed_precision="no")


@dataclass
class Start:
    model: NotaGen
    base: dict  # base record for adapters; {"path", "name", "config"} or {} from scratch
    base_prompts: list[str]
    base_name: str
    training: dict | None  # the state to resume from
    lora: LoraSpec | None = None  # the adapters the model already carries (a resumed LoRA run)
    base_choices: dict = field(default_factory=dict)  # the base model card's meters and keys per prompt


def load_start(config: TrainConfig) -> Start:
    last = config.out_dir / LAST
    if config.resume:
        if not last.is_file():
            raise TrainingError(f"{config.out_dir}: no {LAST} to resume from")
        # Both loaders copy what they return out of the file's mapping: last.pth is replaced by the next save.
        if is_adapter_file(last):
            model, _, data = load_with_adapter(last, models_dirs=config.models_dirs)
            base, lora, training = data["base"], LoraSpec.from_dict(data["lora"]), data.get("training")
        else:
            loaded = load_checkpoint(last)
            model, base, lora, training = loaded.model, {}, None, loaded.training
        if not training:
            raise TrainingError(f"{last}: holds no training state to resume from")
        check_resume(config, TrainConfig.from_dict(training["config"]), last)
        return Start(model, base, training["base_prompts"], training["base_name"], training, lora,
                     training.get("base_header_choices", {}))
    if last.is_file():
        raise TrainingError(f"{config.out_dir} already holds a run ({LAST}); resume it or choose another folder")
    if config.preset:
        torch.manual_seed(config.seed)
        model = NotaGen(preset(config.preset))
        init_weights_like_gpt2(model)
        return Start(model, {}, [], f"preset {config.preset} (from scratch)", None)
    path = resolve_base(config.base, config.models_dirs)
    loaded = load_model(path)
    base = base_record(path, config.base, loaded.model.config)
    return Start(loaded.model.float(), base, prompt_vocabulary(path, loaded.card), Path(path).name, None,
                 base_choices=loaded.card.header_choices)


def check_resume(config: TrainConfig, saved: TrainConfig, path: Path) -> None:
    changed = [k for k in TrainConfig.RESUME_KEYS if getattr(config, k) != getattr(saved, k)]
    if changed:
        details = ", ".join(f"{k} {getattr(saved, k)!r} -> {getattr(config, k)!r}" for k in changed)
        raise TrainingError(f"{path}: cannot resume with changed settings ({details})")


# ---------------------------------------------------------------- the run

class Trainer:
    """One run; `train()` is the front door."""

    def __init__(self, config: TrainConfig, on_log: Callable[[dict], None] | None,
                 on_progress: Callable[[int, int], None] | None, should_stop: Callable[[], bool] | None):
        self.config = config
        self.on_log = on_log
        self.on_progress = on_progress
        self.should_stop = should_stop
        self.device = resolve_device(config.device)
        self.accelerator = make_accelerator(self.device)
        self.device = self.accelerator.device
        self.rank = self.accelerator.process_index
        self.world = self.accelerator.num_processes
        self.main = self.accelerator.is_main_process
        self.precision = resolve_precision(config.precision, self.device)
        self.amp = Amp.create(self.device, self.precision)
        self.log = RunLog(config.out_dir / LOG_NAME, enabled=self.main)

    # -- bookkeeping
    def emit(self, record: dict) -> None:
        record = self.log.write(record)
        if self.main and self.on_log:
            self.on_log(record)

    def stop_requested(self) -> bool:
        wanted = bool(self.should_stop and self.main and self.should_stop())
        if self.world > 1:
            flag = broadcast(torch.tensor([int(wanted)], device=self.device), from_process=0)
            wanted = bool(flag.item())
        return wanted

    def card(self, notes: str) -> ModelCard:
        return ModelCard(config=self.model_config, prompts=[p.line for p in self.prompts],
                         base_model=self.start.base_name, notes=notes, header_choices=self.header_choices)

    def training_state(self, epoch: int, group: int, status: str) -> dict:
        rng = gather_object([capture_rng()]) if self.world > 1 else [capture_rng()]
        return {
            "config": self.config.to_dict(), "epoch": epoch, "group": group, "step": self.step,
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "scaler": self.amp.scaler.state_dict() if self.amp.scaler else None,
            "rng": rng, "world_size": self.world, "best_eval": self.best_eval, "bad_epochs": self.bad_epochs,
            "base_prompts": self.start.base_prompts, "base_name": self.start.base_name, "status": status,
            "base_header_choices": self.start.base_choices,
        }

    def save(self, path: Path, notes: str, training: dict | None) -> None:
        model = self.accelerator.unwrap_model(self.model)
        if self.spec is not None:
            save_adapter(path, model, self.spec, self.card(notes), self.start.base, training)
        else:
            save_checkpoint(path, model, self.card(notes), training)

    def save_last(self, epoch: int, group: int, status: str) -> None:
        training = self.training_state(epoch, group, status)  # every process takes part (RNG gather)
        if self.main:
            self.save(self.config.out_dir / LAST, f"step {self.step}, {status}", training)
        self.accelerator.wait_for_everyone()

    # -- setup
    def setup(self) -> None:
        c = self.config
        seed_everything(c.seed + self.rank)
        self.train_pieces = read_split(c.data_dir, "train")
        if not self.train_pieces:
            raise TrainingError(f"{c.data_dir}: the train split is empty")
        self.eval_pieces = read_split(c.data_dir, "eval")
        check_files(c.data_dir, self.train_pieces, all_keys=c.key_augment)
        check_files(c.data_dir, self.eval_pieces, all_keys=False)
        if len(self.train_pieces) < self.world:
            raise TrainingError(f"{len(self.train_pieces)} training piece(s) cannot be shared by {self.world} processes")
        self.start = load_start(c)
        self.prompts: list[Prompt] = union_prompts(self.start.base_prompts,
                                                   dataset_prompts(c.data_dir, self.train_pieces + self.eval_pieces))
        self.header_choices = merge_choices(self.start.base_choices, load_header_choices(c.data_dir))
        self.spec = self.start.lora or lora_spec(c)
        model, _ = prepare_model(self.start.model, c, self.precision, self.device, self.start.lora is not None)
        self.model = self.accelerator.prepare_model(model)
        self.model_config = model.config
        self.encoder = PieceEncoder(c.data_dir, Patchilizer(model.config.patch_size), model.config.patch_length,
                                    c.seed, c.key_augment)
        self.batches = RunBatches(self.encoder, self.train_pieces, self.rank, self.world, c.batch_size)
        self.steps_per_epoch = math.ceil(self.batches.per_epoch / c.grad_accum)
        self.eval_encoded: list | None = None
        total = c.epochs * self.steps_per_epoch
        self.total_steps = min(total, c.max_steps) if c.max_steps else total
        self.optimizer = build_optimizer(model, c, self.device)
        self.scheduler = build_scheduler(self.optimizer, WarmupDecay(c.warmup_steps, self.total_steps, c.schedule,
                                                                     c.min_lr_ratio))
        self.step, self.epoch, self.group = 0, 0, 0
        self.best_eval, self.bad_epochs = math.inf, 0
        if self.start.training:
            self.restore(self.start.training)
        if self.main:
            c.out_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(c.out_dir / "config.json", json.dumps(c.to_dict(), indent=2) + "\n")
            write_prompts(c.out_dir / "prompts.txt", self.prompts)

    def restore(self, t: dict) -> None:
        self.optimizer.load_state_dict(t["optimizer"])  # after the scheduler is built: keeps the saved lr
        self.scheduler.load_state_dict(t["scheduler"])
        if self.amp.scaler and t.get("scaler"):
            self.amp.scaler.load_state_dict(t["scaler"])
        self.step, self.epoch, self.group = t["step"], t["epoch"], t["group"]
        self.best_eval, self.bad_epochs = t["best_eval"], t["bad_epochs"]
        if t["world_size"] == self.world:
            restore_rng(t["rng"][self.rank])
        else:  # a different process count cannot replay the same dropout; the data order is still exact
            seed_everything(self.config.seed + 1000 * self.step + self.rank)

    # -- steps
    def share_of_chars(self, here: torch.Tensor) -> torch.Tensor:
        """world x this process's share of the micro-batch's chars, all processes together.

        Each process's loss is a mean over its own chars and DDP averages the gradients, so
        weighting by this share makes N processes of batch B train on exactly the loss one
        process of batch N x B computes (the char mean over the whole global batch).
        """
        here = here.to(self.device, torch.float64)
        everywhere = self.accelerator.reduce(here, "sum")
        return (self.world * here / everywhere.clamp(min=1)).to(torch.float32)

    def train_group(self, group: list[list[int]], stream) -> tuple[float, int]:
        """Forward/backward over the micro-batches of one optimizer step; returns (mean loss, chars).

        `stream` yields the encoded micro-batches in the order of the epoch's groups.
        """
        total_loss, chars = 0.0, 0
        for i in range(len(group)):
            patches, masks, here = next(stream)
            patches, masks = (t.to(self.device, non_blocking=True) for t in (patches, masks))
            sync = i == len(group) - 1
            with (self.accelerator.no_sync(self.model) if not sync else contextlib.nullcontext()):
                with self.amp.autocast():
                    loss = self.model(patches, masks) / len(group)
                if self.world > 1:
                    loss = loss * self.share_of_chars(here)
                scaled = self.amp.scaler.scale(loss) if self.amp.scaler else loss
                scaled.backward()
            total_loss += loss.item()
            chars += int(here)
        if self.world > 1:
            both = self.accelerator.reduce(torch.tensor([total_loss, chars], device=self.device, dtype=torch.float64),
                                           "sum")
            total_loss, chars = float(both[0]) / self.world, int(both[1])
        return total_loss, chars

    @torch.no_grad()
    def evaluate(self) -> float | None:
        if not self.eval_pieces:
            return None
        model = self.accelerator.unwrap_model(self.model)
        model.eval()
        if self.eval_encoded is None:  # the same every epoch
            self.eval_encoded = [self.encoder.encode_eval(p) for p in self.eval_pieces[self.rank::self.world]]
        total = summed_loss(model, self.eval_encoded, self.config.batch_size, self.amp.autocast)
        if self.world > 1:
            total = self.accelerator.reduce(total, "sum")
        model.train()
        return float(total[0] / total[1].clamp(min=1))

    def end_epoch(self, epoch: int, train_loss: float | None) -> bool:
        """Evaluate, keep the best model, count patience; True when early stopping says stop."""
        eval_loss = self.evaluate()
        improved = eval_loss is not None and eval_loss < self.best_eval
        if improved:
            self.best_eval, self.bad_epochs = eval_loss, 0
            if self.main:
                self.save(self.config.out_dir / BEST, f"best eval loss {eval_loss:.4f} at step {self.step}", None)
        elif eval_loss is not None:
            self.bad_epochs += 1
        self.emit({"event": "eval", "epoch": epoch + 1, "step": self.step, "eval_loss": eval_loss,
                   "train_loss": train_loss, "best": improved})
        return bool(self.config.patience and self.bad_epochs >= self.config.patience)

    def finish(self, status: str, epoch: int, group: int) -> TrainResult:
        c = self.config
        if not self.eval_pieces and self.main:  # nothing to select on: the final model is the best one
            self.save(c.out_dir / BEST, f"final model at step {self.step} (no eval split)", None)
        self.save_last(epoch, group, status)
        self.emit({"event": "end", "status": status, "step": self.step, "epoch": epoch,
                   "best_eval_loss": None if math.isinf(self.best_eval) else self.best_eval})
        best = c.out_dir / BEST
        return TrainResult(status=status, step=self.step, epoch=epoch,
                           best_eval_loss=None if math.isinf(self.best_eval) else self.best_eval,
                           best_path=best if best.is_file() else None, last_path=c.out_dir / LAST,
                           log_path=c.out_dir / LOG_NAME, prompts_path=c.out_dir / "prompts.txt")

    def run(self) -> TrainResult:
        c = self.config
        self.setup()
        trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        self.emit({"event": "resume" if self.start.training else "start", "step": self.step, "epoch": self.epoch,
                   "total_steps": self.total_steps, "steps_per_epoch": self.steps_per_epoch,
                   "device": str(self.device), "processes": self.world, "precision": self.precision,
                   "trainable_parameters": trainable, "train_pieces": len(self.train_pieces),
                   "eval_pieces": len(self.eval_pieces)})
        if self.start.training and self.start.training.get("status") in ("finished", "early_stopped", "max_steps"):
            return self.finish(self.start.training["status"], self.epoch, self.group)
        self.model.train()
        started, steps_at_start = time.monotonic(), self.step
        epoch = self.epoch
        stream = batch_stream(self.batches, self.epoch * self.batches.per_epoch + self.group * c.grad_accum,
                              data_workers(c.data_workers, self.device), pin=self.device.type == "cuda")
        for epoch in range(self.epoch, c.epochs):
            groups = epoch_groups(self.batches.epoch_shard(epoch), c.batch_size, c.grad_accum)
            first = self.group if epoch == self.epoch else 0
            epoch_loss, epoch_steps = 0.0, 0
            for g in range(first, len(groups)):
                t0 = time.monotonic()
                loss, chars = self.train_group(groups[g], stream)
                lr = self.optimizer.param_groups[0]["lr"]
                stepped, norm = optimizer_step(self.model, self.optimizer, self.amp, c.grad_clip)
                if stepped:
                    self.scheduler.step()
                self.step += 1
                epoch_loss, epoch_steps = epoch_loss + loss, epoch_steps + 1
                now = time.monotonic()
                rate = (now - started) / (self.step - steps_at_start)
                self.emit({"event": "step", "epoch": epoch + 1, "step": self.step, "total_steps": self.total_steps,
                           "loss": loss, "lr": lr, "grad_norm": norm, "skipped": not stepped,
                           "chars_per_s": chars / max(now - t0, 1e-9),
                           "eta_s": rate * (self.total_steps - self.step)})
                if self.on_progress and self.main:
                    self.on_progress(self.step, self.total_steps)
                if c.max_steps and self.step >= c.max_steps:
                    self.end_epoch(epoch, epoch_loss / epoch_steps)
                    return self.finish("max_steps", epoch, g + 1)
                if self.stop_requested():
                    return self.finish("cancelled", epoch, g + 1)
                if c.save_every and self.step % c.save_every == 0:
                    self.save_last(epoch, g + 1, "running")
            stop = self.end_epoch(epoch, epoch_loss / epoch_steps if epoch_steps else None)
            if stop:
                return self.finish("early_stopped", epoch + 1, 0)
            if epoch + 1 < c.epochs:
                self.save_last(epoch + 1, 0, "running")
                if self.stop_requested():
                    return self.finish("cancelled", epoch + 1, 0)
        return self.finish("finished", c.epochs, 0)


def train(config: TrainConfig, on_log: Callable[[dict], None] | None = None,
          on_progress: Callable[[int, int], None] | None = None,
          should_stop: Callable[[], bool] | None = None) -> TrainResult:
    """Run (or resume, with `config.resume`) a training run into `config.out_dir`.

    `on_log(record)` gets every log record (steps, evals, start/end) on the main
    process; `on_progress(step, total_steps)` after every optimizer step;
    `should_stop()` is polled after every step: when it says True the run writes
    a resumable `last.pth` and returns with status "cancelled".
    """
    return Trainer(config, on_log, on_progress, should_stop).run()
