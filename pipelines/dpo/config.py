"""The settings of a CLaMP-DPO run, as a typed dataclass written into every iteration's summary.

Defaults follow NotaGen's CLaMP-DPO (beta 0.1, lambda 10, AdamW at 1e-6, one pair
per step, the top and bottom 10% of the samples, plagiarism above 0.95 CLaMP 2
similarity, sampling top-k 9, top-p 0.9, temperature 1.2) and add what upstream
lacks: mixed precision with a bf16 reference on GPU, checkpointed char decoder,
no dropout while optimising (so the policy's log-probs match the reference's at
step 0), a seed per piece.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path

from pipelines.errors import DPOError
from pipelines.training.config import CHECKPOINTING, OPTIMIZERS, PRECISIONS  # the same training recipe's levers

SCORERS = ("builtin", "clamp2", "none")
REF_DTYPES = ("auto", "bf16", "fp16", "fp32")


@dataclass
class DPOConfig:
    model: Path  # the checkpoint the first iteration starts from
    data_dir: Path  # a built dataset: prompts.txt and interleaved/ (the reference pieces)
    out_dir: Path  # iter_1/, iter_2/, ... and summary.json
    # Iterations
    iterations: int = 1
    samples: int = 200  # pieces generated per iteration
    portion: float = 0.1  # top share chosen, bottom share rejected
    score_final: bool = True  # generate and score `samples` more pieces with the last model (its mean score)
    # Scoring
    scorer: str = "builtin"  # builtin | clamp2 | none (human ratings only)
    clamp2_weights: Path | None = None
    m3_weights: Path | None = None
    plagiarism_threshold: float | None = None  # None: the scorer's own (0.95 for CLaMP 2)
    # Objective and optimiser
    beta: float = 0.1
    lam: float = 10.0
    steps: int = 500  # optimiser steps per iteration
    pairs_per_step: int = 1
    lr: float = 1e-6
    warmup_steps: int = 0
    weight_decay: float = 0.01  # torch AdamW's default, as upstream used it
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float = 1.0
    dropout: float = 0.0
    # Generation
    top_k: int = 9
    top_p: float = 0.9
    temperature: float = 1.2
    generation_batch: int = 16
    max_patches: int = 0  # per piece; 0: no limit
    max_seconds: float = 600.0  # per generation batch
    # Hardware levers
    device: str = "auto"
    precision: str = "auto"  # autocast of the policy: bf16 where supported on GPU, fp32 on CPU
    reference_dtype: str = "auto"  # frozen reference weights: bf16 on GPU, fp32 on CPU
    checkpointing: str = "char"
    optimizer: str = "auto"
    logprob_batch: int = 4  # pieces per forward when measuring log-probs without gradients
    seed: int = 0

    def __post_init__(self):
        self.model = Path(self.model)
        self.data_dir = Path(self.data_dir)
        self.out_dir = Path(self.out_dir)
        self.clamp2_weights = Path(self.clamp2_weights) if self.clamp2_weights else None
        self.m3_weights = Path(self.m3_weights) if self.m3_weights else None
        self.betas = tuple(self.betas)
        checks = [
            (self.iterations >= 1, f"iterations must be at least 1, not {self.iterations}"),
            (self.samples >= 0, f"samples cannot be negative ({self.samples})"),
            (0 < self.portion <= 0.5, f"portion {self.portion} must be above 0 and at most 0.5"),
            (self.scorer in SCORERS, f"scorer {self.scorer!r} is not one of {SCORERS}"),
            (self.scorer != "clamp2" or self.clamp2_weights is not None or self.m3_weights is not None,
             "the clamp2 scorer needs --clamp2-weights (the official CLaMP 2 .pth file)"),
            (self.plagiarism_threshold is None or 0 < self.plagiarism_threshold <= 1,
             f"plagiarism threshold {self.plagiarism_threshold} must be within (0, 1]"),
            (self.beta > 0, f"beta must be positive, not {self.beta}"),
            (self.lam >= 0, f"lambda cannot be negative ({self.lam})"),
            (self.steps >= 0 and self.pairs_per_step >= 1, "steps must be >= 0 and pairs per step >= 1"),
            (self.lr > 0, f"learning rate must be positive, not {self.lr}"),
            (self.generation_batch >= 1 and self.logprob_batch >= 1, "batch sizes must be at least 1"),
            (self.precision in PRECISIONS, f"precision {self.precision!r} is not one of {PRECISIONS}"),
            (self.reference_dtype in REF_DTYPES, f"reference dtype {self.reference_dtype!r} is not one of {REF_DTYPES}"),
            (self.checkpointing in CHECKPOINTING, f"checkpointing {self.checkpointing!r} is not one of {CHECKPOINTING}"),
            (self.optimizer in OPTIMIZERS, f"optimizer {self.optimizer!r} is not one of {OPTIMIZERS}"),
            (0 <= self.dropout < 1, f"dropout {self.dropout} is not within [0, 1)"),
        ]
        for ok, message in checks:
            if not ok:
                raise DPOError(message)

    def to_dict(self) -> dict:
        data = asdict(self)
        for key in ("model", "data_dir", "out_dir", "clamp2_weights", "m3_weights"):
            data[key] = str(data[key]) if data[key] is not None else None
        data["betas"] = list(self.betas)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "DPOConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
