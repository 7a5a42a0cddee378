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
from pipelines.fields import MAX_WORKERS, check_ranges, option

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
    epochs: int = option(10, low=1, help="passes over the training pieces")
    max_steps: int = option(0, low=0, help="stop after this many optimizer steps (0: no limit)", label="max steps")
    batch_size: int = option(1, low=1, help="pieces per step", label="batch size")
    grad_accum: int = option(1, low=1, help="steps whose gradients are summed before the optimizer steps",
                             label="gradient accumulation")
    lr: float | None = option(None, low=0.0, low_open=True, label="learning rate",
                              help=f"peak learning rate; unset: {FINETUNE_LR:g} fine-tuning, {SCRATCH_LR:g} from scratch")
    schedule: str = option("cosine", choices=SCHEDULES, help="learning-rate decay after the warm-up")
    warmup_steps: int = option(100, low=0, help="steps of linear warm-up to the peak rate", label="warm-up steps")
    min_lr_ratio: float = option(0.1, low=0.0, high=1.0, help="the decay ends at the peak rate times this",
                                 label="min lr ratio")
    weight_decay: float = option(0.01, low=0.0, help="AdamW's, on weight matrices (not biases and layer norms)",
                                 label="weight decay")
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float = option(1.0, low=0.0, help="max global gradient norm (0: off)", label="gradient clip")
    patience: int = option(3, low=0, help="epochs without a better eval loss before stopping (0: off)")
    save_every: int = option(0, low=0, help="also checkpoint every N optimizer steps (0: once per epoch)",
                             label="save every")
    # Data
    key_augment: bool = option(True, help="draw each piece in a key up to 3 semitones away, as upstream; "
                                          "off: its original key only", label="key augmentation")
    seed: int = option(0, help="seed of the data order, key draws and dropout")
    # Model options
    lora_rank: int = option(0, low=0, help="train LoRA adapters of this rank (0: full fine-tuning)",
                            label="LoRA rank")
    lora_alpha: float = option(0.0, low=0.0, help="LoRA scale numerator (0: 2 x rank)", label="LoRA alpha")
    lora_dropout: float = option(0.05, low=0.0, high=1.0, high_open=True, help="dropout on the LoRA path",
                                 label="LoRA dropout")
    lora_targets: tuple[str, ...] = LORA_TARGETS
    freeze_patch_decoder: bool = option(False, help="train the char decoder only", label="freeze patch decoder")
    dropout: float | None = option(None, low=0.0, high=1.0, high_open=True,
                                   help="override the model's dropout, e.g. 0 to compare runs; unset: the model's "
                                        "own (0.1 as upstream)")
    # Hardware levers
    device: str = option("auto", help="auto, cpu, cuda, cuda:1 or mps")
    precision: str = option("auto", choices=PRECISIONS,
                            help="auto: bf16 where supported, else fp16 with a scaler on GPU, fp32 on CPU")
    checkpointing: str = option("char", choices=CHECKPOINTING,
                                help="which decoder recomputes its activations in backward (memory for time)")
    optimizer: str = option("auto", choices=OPTIMIZERS, help="AdamW's implementation (auto: fused on GPU)")
    compile: bool = option(False, help="torch.compile the transformer blocks")
    data_workers: int = option(-1, low=-1, high=MAX_WORKERS, label="data workers",
                               help="processes that encode batches ahead of the GPU (-1: a few on a GPU, 0 on CPU)")
    frozen_dtype: str = option("auto", choices=FROZEN_DTYPES, label="frozen dtype",
                               help="auto: a LoRA run keeps its frozen base in bf16 when training in bf16")
    resume: bool = option(False, help="continue the run in the out folder from its last.pth")

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
        check_ranges(self, TrainingError)
        if self.lora_rank and self.preset:
            raise TrainingError("LoRA adapts a trained model: give --base, not --preset")
        if not set(self.lora_targets) <= set(LORA_TARGETS):
            raise TrainingError(f"LoRA targets must be among {LORA_TARGETS}")

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

    # What must not change when a run is resumed: the data order and schedule depend on some, the
    # model being trained on the rest (a resume that changed its dropout or adapter would be
    # another run under the old one's name).
    RESUME_KEYS = ("epochs", "max_steps", "batch_size", "grad_accum", "lr", "schedule", "warmup_steps",
                   "min_lr_ratio", "key_augment", "seed", "lora_rank", "lora_alpha", "lora_dropout", "lora_targets",
                   "freeze_patch_decoder", "dropout")
