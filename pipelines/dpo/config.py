"""The settings of a CLaMP-DPO run, as a typed dataclass written into every iteration's summary.

Defaults follow NotaGen's CLaMP-DPO (beta 0.1, lambda 10, AdamW at 1e-6, one pair
per step, the top and bottom 10% of the samples, plagiarism above 0.95 CLaMP 2
similarity) and add what upstream lacks: mixed precision with a bf16 reference on
GPU, checkpointed char decoder, no dropout while optimising (so the policy's log-probs
match the reference's at step 0), a seed per piece, a patch limit (a piece that never
ends becomes a rejected candidate instead of running to the time limit), optimiser
steps that scale with the pairs and stop early on held-out pairs, and a minimum of
pairs below which the run stops.
The sampling fields are declared `same_as` the generator's (SamplingConfig, GenerationLimits).

The defaults are sized for a GPU (the engine writes tens of thousands of chars/s at
batch 32 there: 256 pieces of up to 800 patches take about a minute). `SIZED["cpu"]`
holds the sizes a CPU finishes in a minute or two; `sized_settings(device_type)` is
the one place the studio and the CLI's estimate read them from.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from pipelines.errors import DPOError
from pipelines.fields import check_ranges, default_of, option, same_as
from pipelines.generation.options import GenerationLimits, SamplingConfig
from pipelines.training.config import CHECKPOINTING, OPTIMIZERS, PRECISIONS  # the same training recipe's levers

SCORERS = ("builtin", "clamp2", "none")
REF_DTYPES = ("auto", "bf16", "fp16", "fp32")
# What a device type changes in the defaults (the rest are DPOConfig's, sized for a GPU). A CPU writes a few
# hundred chars/s with the demo model and takes seconds per step (docs/dpo.md): eight pieces of up to 160
# patches (a chorale ends in 110-140), one iteration, a few steps, no second sample: a minute or two.
SIZED: dict[str, dict] = {
    "cpu": {"iterations": 1, "samples": 8, "generation_batch": 8, "max_patches": 160, "steps": 8, "min_pairs": 1,
            "score_final": False},
}


@dataclass
class DPOConfig:
    model: Path  # the checkpoint the first iteration starts from
    data_dir: Path  # a built dataset: prompts.txt and interleaved/ (the reference pieces)
    out_dir: Path  # iter_1/, iter_2/, ... and summary.json
    # Iterations
    iterations: int = option(1, low=1, help="generate, score, prefer and optimise this many times")
    samples: int = option(256, low=0, help="pieces generated per iteration")
    portion: float = option(0.1, low=0.0, low_open=True, high=0.5,
                            help="top share of the scored pieces chosen, bottom share rejected (pieces that "
                                 "do not end or are not usable are rejected too)")
    min_pairs: int = option(8, low=1, label="minimum pairs",
                            help="an iteration with fewer preference pairs stops the run before it optimises "
                                 "(the model so far is the result)")
    score_final: bool = option(True, label="final score",
                               help="the last model writes as many pieces again, to measure its share of usable "
                                    "pieces and its mean score")
    keep_best: bool = option(False, label="keep best",
                             help="the result is the measured model with the highest usable share x mean score "
                                  "(the starting model included), not the last one")
    # Scoring
    scorer: str = option("builtin", choices=SCORERS,
                         help="none: your judgements only (rated pieces, judged pairs); no piece is written")
    clamp2_weights: Path | None = option(None, label="CLaMP 2 weights",
                                         help="the official CLaMP 2 .pth (sander-wood/clamp2 on Hugging Face)")
    m3_weights: Path | None = option(None, label="M3 weights",
                                     help="the official M3 .pth (optional; CLaMP 2's file already holds it)")
    plagiarism_threshold: float | None = option(
        None, low=0.0, low_open=True, high=1.0, label="plagiarism threshold",
        help="similarity to one reference piece that counts as a copy; unset: the scorer's own "
             "(0.95 CLaMP 2, 0.985 builtin)")
    # Objective and optimiser
    beta: float = option(0.1, low=0.0, low_open=True, help="how far the policy may move from the reference")
    lam: float = option(10.0, low=0.0, label="lambda", help="weight of the term that keeps chosen pieces likely")
    steps: int = option(500, low=0, help="optimiser steps per iteration, at most")
    steps_per_pair: float = option(2.0, low=0.0, low_open=True, label="steps per pair",
                                   help="optimiser steps per preference pair, up to `steps`: a handful of pairs gets "
                                        "a handful of steps, so it cannot be fit to zero loss")
    holdout: float = option(0.2, low=0.0, high=0.5, label="held-out share",
                            help="share of the rejected pieces (at most 16) kept out of the optimiser; it stops when "
                                 "their pairs' loss has not fallen for 3 checks in a row (0: off; needs 5 rejected)")
    pairs_per_step: int = option(1, low=1, help="preference pairs per optimiser step", label="pairs per step")
    lr: float = option(1e-6, low=0.0, low_open=True, label="learning rate", help="AdamW's learning rate")
    warmup_steps: int = option(0, low=0, label="warm-up steps", help="steps of linear warm-up to the learning rate")
    weight_decay: float = option(0.01, low=0.0, label="weight decay", help="torch AdamW's default, as upstream used it")
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float = option(1.0, low=0.0, label="gradient clip", help="max global gradient norm (0: off)")
    dropout: float = option(0.0, low=0.0, high=1.0, high_open=True, help="dropout while optimising")
    # Generation: the sampler's own defaults and ranges
    top_k: int = same_as(SamplingConfig, "top_k")
    top_p: float = same_as(SamplingConfig, "top_p")
    temperature: float = same_as(SamplingConfig, "temperature")
    generation_batch: int = option(64, low=1, help="pieces generated at once", label="generation batch")
    # DPO's own default: a piece that has not ended after 800 patches is a rejected candidate (no limit
    # would let it run to the time limit, holding its whole batch).
    max_patches: int = same_as(GenerationLimits, "max_patches", default=800,
                               help="patches per generated piece; one that has not ended by then is rejected "
                                    "(0: no limit)")
    max_seconds: float = same_as(GenerationLimits, "max_seconds", help="wall time per generation batch, in seconds")
    # Hardware levers
    device: str = option("auto", help="auto, cpu, cuda, cuda:1 or mps")
    precision: str = option("auto", choices=PRECISIONS,
                            help="autocast of the policy: bf16 where supported on GPU, fp32 on CPU")
    reference_dtype: str = option("auto", choices=REF_DTYPES, label="reference dtype",
                                  help="frozen reference weights: bf16 on GPU, fp32 on CPU")
    checkpointing: str = option("char", choices=CHECKPOINTING,
                                help="which decoder recomputes its activations in backward (memory for time)")
    optimizer: str = option("auto", choices=OPTIMIZERS, help="AdamW's implementation (auto: fused on GPU)")
    logprob_batch: int = option(4, low=1, label="log-prob batch",
                                help="pieces per forward when measuring log-probs without gradients")
    seed: int = option(0, help="seed of the generated pieces' draws (each piece gets its own)")

    def __post_init__(self):
        self.model = Path(self.model)
        self.data_dir = Path(self.data_dir)
        self.out_dir = Path(self.out_dir)
        self.clamp2_weights = Path(self.clamp2_weights) if self.clamp2_weights else None
        self.m3_weights = Path(self.m3_weights) if self.m3_weights else None
        self.betas = tuple(self.betas)
        check_ranges(self, DPOError)
        if self.scorer == "clamp2" and self.clamp2_weights is None and self.m3_weights is None:
            raise DPOError("the clamp2 scorer needs --clamp2-weights (the official CLaMP 2 .pth file)")
        if self.keep_best and self.scorer == "none":
            raise DPOError("keep best compares the models' usable share and mean score, which needs a scorer "
                           "(builtin or clamp2), not 'none'")

    def optimiser_steps(self, pairs: int) -> int:
        """Steps for an iteration with `pairs` preference pairs: `steps_per_pair` each, at most `steps`."""
        if pairs <= 0 or self.steps == 0:
            return 0
        return max(1, min(self.steps, math.ceil(self.steps_per_pair * pairs / self.pairs_per_step)))

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


def sized_settings(device_type: str) -> dict:
    """The settings a run on a `device_type` ("cpu", "cuda", "mps") starts from: DPOConfig's defaults with that
    device's sizes (`SIZED`). Paths are not settings and are left out."""
    settings = {f.name: default_of(DPOConfig, f.name) for f in fields(DPOConfig)
                if f.name not in ("model", "data_dir", "out_dir")}
    return {**settings, **SIZED.get(device_type, {})}
