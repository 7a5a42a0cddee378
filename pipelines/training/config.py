"""The settings of one training run, as a typed dataclass saved inside its checkpoints.

Defaults follow upstream NotaGen's fine-tuning recipe (AdamW, learning rate 1e-5,
batch 1) where it has one, and add what upstream lacks: a warm-up and decay that
really apply, weight decay on matrices only, gradient clipping, early stopping.
The memory / speed levers (`precision`, `checkpointing`, `optimizer`, `compile`,
`frozen_dtype`) are fields too, so the benchmark and the loop build the same recipe.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from pipelines.errors import TrainingError

SCHEDULES = ("cosine", "linear", "constant")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
CHECKPOINTING = ("none", "patch", "char", "both")
OPTIMIZERS = ("auto", "fused", "foreach", "plain")
FROZEN_DTYPES = ("auto", "fp32")
LORA_TARGETS = ("c_attn", "c_proj", "c_fc")

FINETUNE_LR = 1e-5  # upstream's fine-tuning rate
SCRATCH_LR = 3e-4


@dataclass
class TrainConfig:
    """Everything `train()` needs; `base` xor `preset` says where the weights start."""

    data_dir: Path
    out_dir: Path
    base: str | None = None  # a checkpoint file (upstream, studio or LoRA adapter) or "notagen-x"
    preset: str | None = None  # train from scratch with pipelines.model.PRESETS[preset]
    models_dirs: list[Path] = field(default_factory=list)  # where "notagen-x" by name is looked for
    # Schedule
    epochs: int = 10
    max_steps: int = 0  # optimizer steps; 0: no limit
    batch_size: int = 1
    grad_accum: int = 1
    lr: float | None = None  # None: 1e-5 when fine-tuning, 3e-4 from scratch
    schedule: str = "cosine"
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1  # the decay ends at lr * min_lr_ratio
    weight_decay: float = 0.01  # on weight matrices; biases and layer norms are not decayed
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float = 1.0  # max global gradient norm; 0: off
    patience: int = 3  # epochs without a better eval loss before stopping; 0: off
    save_every: int = 0  # also write last.pth every N optimizer steps; 0: once per epoch
    # Data
    key_augment: bool = True  # upstream's +-3 semitone key draw; False: original key only
    seed: int = 0
    # Model options
    lora_rank: int = 0  # 0: full fine-tuning
    lora_alpha: float = 0.0  # 0: 2 * rank
    lora_dropout: float = 0.05
    lora_targets: tuple[str, ...] = LORA_TARGETS
    freeze_patch_decoder: bool = False
    dropout: float | None = None  # None: the model's own (0.1 as upstream)
    # Hardware levers
    device: str = "auto"  # auto, cpu, cuda, cuda:1, mps
    precision: str = "auto"  # auto: bf16 where supported, else fp16 with a scaler on GPU, fp32 on CPU
    checkpointing: str = "char"  # which decoder recomputes its activations in backward
    optimizer: str = "auto"  # auto: fused AdamW on GPU
    compile: bool = False  # torch.compile every transformer block
    data_workers: int = -1  # processes encoding batches ahead; -1: a few on a GPU, none on CPU
    frozen_dtype: str = "auto"  # auto: a LoRA run keeps its frozen base in bf16 when training in bf16
    resume: bool = False

    def __post_init__(self):
        self.data_dir = Path(self.data_dir)
        self.out_dir = Path(self.out_dir)
        self.models_dirs = [Path(p) for p in self.models_dirs]
        self.betas = tuple(self.betas)
        self.lora_targets = tuple(self.lora_targets)
        if (self.base is None) == (self.preset is None):
            raise TrainingError("give exactly one of a base model (--base) or a preset (--preset)")
        if self.lr is None:
            self.lr = FINETUNE_LR if self.base is not None else SCRATCH_LR
        checks = [
            (self.schedule in SCHEDULES, f"schedule {self.schedule!r} is not one of {SCHEDULES}"),
            (self.precision in PRECISIONS, f"precision {self.precision!r} is not one of {PRECISIONS}"),
            (self.checkpointing in CHECKPOINTING, f"checkpointing {self.checkpointing!r} is not one of {CHECKPOINTING}"),
            (self.optimizer in OPTIMIZERS, f"optimizer {self.optimizer!r} is not one of {OPTIMIZERS}"),
            (self.frozen_dtype in FROZEN_DTYPES, f"frozen dtype {self.frozen_dtype!r} is not one of {FROZEN_DTYPES}"),
            (self.epochs >= 1, f"epochs must be at least 1, not {self.epochs}"),
            (self.batch_size >= 1 and self.grad_accum >= 1, "batch size and gradient accumulation must be >= 1"),
            (self.lr > 0, f"learning rate must be positive, not {self.lr}"),
            (self.warmup_steps >= 0 and self.max_steps >= 0, "warm-up and max steps cannot be negative"),
            (0 <= self.min_lr_ratio <= 1, f"min lr ratio {self.min_lr_ratio} is not within 0..1"),
            (self.lora_rank >= 0, f"LoRA rank cannot be negative ({self.lora_rank})"),
            (not (self.lora_rank and self.preset), "LoRA adapts a trained model: give --base, not --preset"),
            (set(self.lora_targets) <= set(LORA_TARGETS), f"LoRA targets must be among {LORA_TARGETS}"),
        ]
        for ok, message in checks:
            if not ok:
                raise TrainingError(message)

    @property
    def effective_lora_alpha(self) -> float:
        return self.lora_alpha or 2.0 * self.lora_rank

    def to_dict(self) -> dict:
        data = asdict(self)
        data["data_dir"] = str(self.data_dir)
        data["out_dir"] = str(self.out_dir)
        data["models_dirs"] = [str(p) for p in self.models_dirs]
        data["betas"] = list(self.betas)
        data["lora_targets"] = list(self.lora_targets)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    # What must not change when a run is resumed (the data order and schedule depend on them).
    RESUME_KEYS = ("epochs", "max_steps", "batch_size", "grad_accum", "lr", "schedule", "warmup_steps",
                   "min_lr_ratio", "key_augment", "seed", "lora_rank", "freeze_patch_decoder")
