"""CLaMP-DPO iterations: generate, score, choose and reject, optimise DPOP, save; K times in a row.

Run folder:

    iter_K/samples/<name>.abc, <name>.raw.abc   post-processed and as-generated pieces
    iter_K/scores.csv                            name, prompt, seed, status, score, nearest reference, decision
    iter_K/preference.json                       chosen and rejected pieces, each with score and reason; the pairs
    iter_K/model.pth, iter_K/prompts.txt         the optimised model (card included) and its prompt vocabulary
    final/samples/, final/scores.csv             pieces of the last model, measured
    summary.json                                 settings, status, per-model figures, per-iteration results

Each iteration starts from the previous one's model, which is both the policy (fp32
master weights, autocast) and the frozen reference (bf16 on GPU, no gradients). Each
iteration's samples measure the model it starts from (`report.py`): the share of pieces
that end, the share usable, the mean score.

Progress: every stage says what it does (an `on_log` record with `text`) and then counts
its own work from 0 through `on_progress(done, total)`: patches written (pieces where there
is no patch limit), optimiser steps.
"""
from __future__ import annotations

import csv
import io
import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from pipelines.abc.prompts import Prompt, read_prompts, write_prompts
from pipelines.abc.tokenizer import Patchilizer, pad_patches
from pipelines.dpo.config import DPOConfig
from pipelines.dpo.logprobs import (
    encode_pieces,
    measure_logprobs,
    sequence_logprobs,
    training_text,
    unfinished_text,
)
from pipelines.dpo.loss import dpo_loss
from pipelines.dpo.preference import (
    Candidate,
    HumanJudgement,
    Preference,
    classify,
    describe_judgements,
    merge_ratings,
    select_preferences,
    why_few_pairs,
)
from pipelines.dpo.report import SampleFigures, best_model, flag_text, lowered_usable, measure
from pipelines.dpo.scorers import BuiltinScorer, Scorer, cosine_to_mean, nearest_reference
from pipelines.errors import DPOError, NotaGenError
from pipelines.files import atomic_write_text, read_text
from pipelines.generation.engine import Engine, GenerationRequest
from pipelines.generation.options import GenerationLimits, SamplingConfig
from pipelines.generation.plan import kernels_run_on
from pipelines.model.checkpoint import ModelCard, save_checkpoint
from pipelines.model.lora import load_model
from pipelines.model.network import NotaGen, count_parameters
from pipelines.model.registry import prompt_vocabulary
from pipelines.model.runtime import DTYPES, pick_runtime, release
from pipelines.training.data import union_prompts
from pipelines.training.recipe import (
    Amp,
    build_optimizer,
    optimizer_step,
    resolve_device,
    resolve_precision,
    set_checkpointing,
    set_dropout,
)
from pipelines.training.schedule import WarmupDecay, build_scheduler

MODEL_NAME = "model.pth"
SUMMARY = "summary.json"
CandidateSource = Callable[[int, Path], list[Candidate]]  # (iteration, model path) -> pieces to score
Progress = Callable[[int, int], None]


@dataclass
class OptimiseStats:
    steps: int = 0
    pairs: int = 0
    loss_first: float | None = None
    loss_last: float | None = None  # mean over the last 10% of steps
    reward_accuracy: float | None = None  # share of pairs whose chosen reward beats the rejected one, at the end
    margin_before: float | None = None  # mean over pairs of policy log p(chosen) - log p(rejected)
    margin_after: float | None = None
    chosen_logprob_before: float | None = None
    chosen_logprob_after: float | None = None
    peak_memory_bytes: int | None = None  # CUDA only
    seconds_per_step: float | None = None
    mean_patches: float | None = None  # of the chosen and rejected pieces as measured (cut to the context)
    planned_steps: int = 0  # `optimiser_steps(training pairs)`; fewer when the held-out loss stopped falling
    heldout_pairs: int = 0  # pairs of the held-out rejected pieces, never optimised on
    heldout_loss_first: float | None = None  # their mean DPOP loss before the first step (log 2)
    heldout_loss_best: float | None = None
    heldout_loss_last: float | None = None
    stopped_early: str = ""  # why optimising stopped before `planned_steps`, in words
    cancelled: bool = False


@dataclass
class IterationResult:
    iteration: int
    start_model: str
    checkpoint: str | None
    mean_score: float | None  # of the pieces generated at the start of this iteration
    generated: int
    scored: int
    chosen: int
    rejected: int
    pairs: int
    seconds: float
    figures: SampleFigures | None = None  # of the pieces generated at the start (its starting model's)
    usable_after: float | None = None  # usable share of this iteration's model, once measured
    lowered_usable: bool = False  # this iteration's model writes a smaller usable share than its starting model
    optimise: OptimiseStats = field(default_factory=OptimiseStats)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["figures"] = self.figures.to_dict() if self.figures else None
        return data


@dataclass
class DPOResult:
    status: str  # finished | stopped (too few pairs) | cancelled
    iterations: list[IterationResult]
    final_mean_score: float | None
    final_model: Path
    summary_path: Path
    message: str = ""  # what the run did, in words (why it stopped; which model was kept)
    measured: list[SampleFigures] = field(default_factory=list)  # the starting model, each iteration's model

    @property
    def mean_scores(self) -> list[float | None]:
        return [r.mean_score for r in self.iterations] + [self.final_mean_score]


# ---------------------------------------------------------------- inputs

def read_references(data_dir: Path) -> list[tuple[str, str]]:
    """(name, text) of the dataset's reference pieces: `interleaved/*.abc`."""
    folder = Path(data_dir) / "interleaved"
    files = sorted(folder.glob("*.abc")) if folder.is_dir() else []
    if not files:
        raise DPOError(f"{folder}: no reference pieces (*.abc); build the dataset with `notagen dataset build`")
    out = []
    for path in files:
        try:
            out.append((path.stem, read_text(path)))
        except UnicodeDecodeError as e:
            raise DPOError(f"{path}: not UTF-8 text ({e.reason})") from None
    return out


def dataset_prompt_list(data_dir: Path) -> list[Prompt]:
    path = Path(data_dir) / "prompts.txt"
    if not path.is_file():
        raise DPOError(f"{path}: missing; the dataset's prompts say what to generate")
    prompts = read_prompts(path)
    if not prompts:
        raise DPOError(f"{path}: holds no prompts")
    return prompts


def build_scorer(config: DPOConfig, device: torch.device) -> Scorer | None:
    if config.scorer == "none":
        return None
    if config.scorer == "builtin":
        return BuiltinScorer()
    from pipelines.dpo.clamp2 import Clamp2Scorer

    return Clamp2Scorer.from_files(config.clamp2_weights, config.m3_weights, device=device)


# ---------------------------------------------------------------- generation and scoring

def sample_seed(config: DPOConfig, iteration: int, index: int) -> int:
    """Distinct seeds across iterations; iteration 0 is the final evaluation."""
    return config.seed * 1_000_003 + iteration * max(config.samples, 1) + index


def shard_requests(count: int, batch: int, rank: int, world: int) -> list[list[int]]:
    """The batches of sample indices process `rank` of `world` generates.

    One process cuts 0..count-1 into batches of `batch`; process r of N takes batches r, r+N, ...
    of that same cut, so every batch has the composition and shape it has in one process. (On a
    GPU in fp16 a piece's draws are the same in any batch only up to rounding: matrix kernels
    differ with the batch's shape, and a near tie can then go the other way.)
    """
    if not 0 <= rank < world:
        raise DPOError(f"process {rank} is not one of {world} processes")
    batches = [list(range(i, min(i + batch, count))) for i in range(0, count, batch)]
    return batches[rank::world]


def gather_candidates(mine: list[Candidate], world: int) -> list[Candidate]:
    """Every process's pieces, on every process, in sample order (seeds grow with the index)."""
    if world == 1:
        return mine
    from accelerate.utils import gather_object

    return sorted(gather_object(mine), key=lambda c: c.seed)


def generation_work(config: DPOConfig, pieces: int) -> int:
    """The progress units of writing `pieces` pieces: patches where they have a limit, else pieces."""
    return pieces * (config.max_patches or 1)


class _WrittenCount:
    """Progress of a generation stage in patches (pieces where there is no patch limit), reported at most
    every 1% of the stage; a batch counts in full once it is done (most pieces end before their limit)."""

    def __init__(self, config: DPOConfig, total: int, on_progress: Progress | None):
        self.per_piece = config.max_patches or 0
        self.total, self.on_progress = total, on_progress
        self.done = self.shown = 0
        self.batch_done = self.batch_top = 0
        self.step = max(1, total // 100)

    def start_batch(self, pieces: int):
        self.batch_done, self.batch_top = 0, pieces * self.per_piece

    def on_patch(self, _row: int, _text: str):
        self.batch_done += 1
        self._show(self.done + min(self.batch_done, max(self.batch_top - 1, 0)))

    def end_batch(self, pieces: int):
        self.done += pieces * (self.per_piece or 1)
        self._show(self.done, force=True)

    def _show(self, done: int, force: bool = False):
        if self.on_progress and (force or done - self.shown >= self.step):
            self.shown = done
            self.on_progress(min(done, self.total), self.total)


def generate_candidates(model_path: Path, prompts: list[Prompt], config: DPOConfig, iteration: int,
                        samples_dir: Path, on_progress: Progress | None = None,
                        should_stop: Callable[[], bool] | None = None, rank: int = 0,
                        world: int = 1) -> list[Candidate]:
    """`config.samples` pieces over the prompts (cycled), in batches; written to `samples_dir`.

    `on_progress(done, total)` counts patches written (pieces where there is no patch limit).
    With `world` > 1 (processes started by accelerate / torchrun, process group set up),
    process `rank` generates only its share of the batches (`shard_requests`) and every process
    returns all the pieces (`gather_candidates`). A piece's draws depend only on its seed and its
    batches are the ones a single process makes, so the set is the one a single process makes.
    """
    loaded = load_model(model_path, device="cpu")
    runtime = pick_runtime(config.device, None)
    # Hundreds of pieces at one batch size: compiled steps (off by default) pay for their compilation here.
    engine = Engine(loaded.model, runtime, name=Path(model_path).name, card=loaded.card,
                    compile=kernels_run_on(runtime))
    sampling = SamplingConfig(config.top_k, config.top_p, config.temperature)
    # No bar redraws: DPO learns from what the model writes on its own, so a misaligned piece
    # must reach the scorer as the model wrote it (a redraw would hide the very fault to unlearn).
    limits = GenerationLimits(max_patches=config.max_patches, max_seconds=config.max_seconds, bar_retries=0)
    batches = shard_requests(config.samples, config.generation_batch, rank, world)
    count = _WrittenCount(config, generation_work(config, sum(map(len, batches))), on_progress)
    candidates: list[Candidate] = []
    try:
        for indices in batches:
            if should_stop and should_stop():
                break
            requests = [GenerationRequest(prompt=prompts[i % len(prompts)], seed=sample_seed(config, iteration, i))
                        for i in indices]
            count.start_batch(len(indices))
            pieces = engine.generate(requests, sampling, limits, on_patch=count.on_patch, should_stop=should_stop)
            for i, piece in zip(indices, pieces):
                name = f"sample_{i + 1:04d}"
                atomic_write_text(samples_dir / f"{name}.raw.abc", piece.raw)
                if piece.abc is not None:
                    atomic_write_text(samples_dir / f"{name}.abc", piece.abc)
                candidates.append(Candidate(name=name, text=piece.raw, abc=piece.abc, prompt=piece.request.prompt,
                                            seed=piece.request.seed, status=piece.status,
                                            problem=piece.reason if piece.abc is None else "", chars=piece.chars))
            count.end_batch(len(indices))
    finally:
        engine.unload()
    return gather_candidates(candidates, world)


def score_candidates(candidates: list[Candidate], scorer: Scorer, references: list[tuple[str, str]],
                     reference_features: torch.Tensor) -> float | None:
    """Set score and nearest reference on every candidate with ABC; returns their mean score."""
    usable = [c for c in candidates if c.abc is not None]
    if not usable:
        return None
    features = scorer.features([c.abc for c in usable])
    scores = cosine_to_mean(features, reference_features)
    nearest, index = nearest_reference(features, reference_features)
    for c, s, n, i in zip(usable, scores.tolist(), nearest.tolist(), index.tolist()):
        c.score, c.nearest_similarity, c.nearest_reference = s, n, references[i][0]
    return float(scores.mean())


def scores_csv(candidates: list[Candidate]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["name", "source", "prompt", "seed", "status", "ended", "usable", "score", "nearest_reference",
                     "nearest_similarity", "decision", "reason"])
    for c in candidates:
        writer.writerow([c.name, c.source, c.prompt.line if c.prompt else "", "" if c.seed is None else c.seed,
                         c.status, int(c.ended), int(c.usable), "" if c.score is None else f"{c.score:.6f}",
                         c.nearest_reference, "" if c.nearest_similarity is None else f"{c.nearest_similarity:.6f}",
                         c.decision, c.reason or c.problem])
    return buffer.getvalue()


@dataclass
class Judge:
    """Scores pieces against the dataset's reference pieces and measures a model's sample."""

    scorer: Scorer
    references: list[tuple[str, str]]
    reference_features: torch.Tensor
    threshold: float

    @classmethod
    def for_run(cls, config: DPOConfig, device: torch.device) -> Judge | None:
        """None without a scorer (`scorer="none"`)."""
        scorer = build_scorer(config, device)
        if scorer is None:
            return None
        references = read_references(config.data_dir)
        threshold = (config.plagiarism_threshold if config.plagiarism_threshold is not None
                     else scorer.plagiarism_threshold)
        return cls(scorer, references, scorer.features([text for _, text in references]), threshold)

    def score(self, candidates: list[Candidate]) -> float | None:
        return score_candidates(candidates, self.scorer, self.references, self.reference_features)

    def measure(self, candidates: list[Candidate], model: Path, label: str) -> SampleFigures:
        """Score, classify (usable or why not) and count a model's pieces."""
        mean = self.score(candidates)
        classify(candidates, self.threshold)
        for c in candidates:
            c.decision = c.decision or "scored"
        return measure(candidates, str(model), label, mean)


def evaluate_model(config: DPOConfig, model_path: Path, folder: Path, seed_block: int, label: str,
                   on_progress: Progress | None = None,
                   should_stop: Callable[[], bool] | None = None) -> SampleFigures:
    """A fresh sample of `config.samples` pieces of a model (seeds of block `seed_block`, see `sample_seed`),
    measured as a run measures its models; the pieces and their scores.csv go to `folder`."""
    judge = Judge.for_run(config, resolve_device(config.device))
    if judge is None:
        raise DPOError("measuring a model needs a scorer (builtin or clamp2)")
    candidates = generate_candidates(model_path, dataset_prompt_list(config.data_dir), config, seed_block,
                                     folder / "samples", on_progress, should_stop)
    figures = judge.measure(candidates, model_path, label)
    atomic_write_text(folder / "scores.csv", scores_csv(candidates))
    return figures


# ---------------------------------------------------------------- optimisation

def reference_dtype(config: DPOConfig, device: torch.device) -> torch.dtype:
    """The frozen reference's weights: as asked, or "auto": the dtype training autocasts to on `device`."""
    if config.reference_dtype != "auto":
        return DTYPES[config.reference_dtype]
    return DTYPES[resolve_precision("auto", device)]


def load_policy_and_reference(model_path: Path, config: DPOConfig,
                              device: torch.device) -> tuple[NotaGen, NotaGen, ModelCard]:
    policy_ckpt = load_model(model_path, device="cpu")
    policy = policy_ckpt.model.float()
    set_dropout(policy, config.dropout)
    policy.patch_level_decoder.base.wte.weight.requires_grad_(False)  # upstream's unused 1-row table
    policy.to(device)
    policy.tie_weights()
    set_checkpointing(policy, config.checkpointing)
    policy.train()  # checkpointing applies in train mode; dropout is config.dropout (0: deterministic)
    reference = load_model(model_path, device="cpu").model
    reference.to(device=device, dtype=reference_dtype(config, device))
    reference.tie_weights()
    reference.requires_grad_(False)
    return policy, reference.eval(), policy_ckpt.card


def _mean_margin(chosen: torch.Tensor, rejected: torch.Tensor) -> float:
    return float(chosen.mean() - rejected.mean())


def dpo_step(policy: NotaGen, optimizer: torch.optim.Optimizer, amp: Amp, patches: torch.Tensor, masks: torch.Tensor,
             ref_chosen: torch.Tensor, ref_rejected: torch.Tensor, config: DPOConfig):
    """One DPOP optimizer step on n pairs: `patches` (2n, N, P) holds the chosen pieces, then the rejected.

    Returns per-pair losses, chosen and rejected rewards (detached), whether the optimizer
    stepped (fp16 may skip on overflow) and the gradient norm.
    """
    n = len(ref_chosen)
    with amp.autocast():
        logps = sequence_logprobs(policy, patches, masks).float()
    losses, chosen_rewards, rejected_rewards = dpo_loss(logps[:n], logps[n:], ref_chosen, ref_rejected,
                                                        config.beta, config.lam)
    loss = losses.mean()
    (amp.scaler.scale(loss) if amp.scaler else loss).backward()
    stepped, norm = optimizer_step(policy, optimizer, amp, config.grad_clip)
    return losses.detach(), chosen_rewards, rejected_rewards, stepped, norm


def encode_candidates(candidates: list[Candidate], patchilizer: Patchilizer, length: int) -> list[list[list[int]]]:
    """Each piece as the model is to learn it: one that ended in the training format, one that did not as
    written (`encode_pieces`)."""
    texts, formats = [], []
    for c in candidates:
        # A piece that ended without a tune body (rejected: it has no bars to put in the training format) is
        # learned as written, as an unfinished one is.
        in_training_format = c.ended and "[V:" in c.text
        texts.append(training_text(c.text, c.prompt) if in_training_format else unfinished_text(c.text))
        formats.append(in_training_format)
    return encode_pieces(texts, patchilizer, length, formats)


HELDOUT_MIN_REJECTED = 5  # fewer rejected pieces than this: none is held out
HELDOUT_MAX_PIECES = 16  # held-out rejected pieces, at most (each check measures them all)
HELDOUT_PATIENCE = 3  # checks in a row without a lower held-out loss before optimising stops
HELDOUT_CHECKS = 10  # checks per iteration


def split_heldout(pairs: list[tuple[int, int]], rejected: Sequence[int], config: DPOConfig,
                  iteration: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(training pairs, held-out pairs): the pairs of a `holdout` share of the `rejected` pieces (indices of those
    that may be held out, drawn with the run's seed) are kept out of the optimiser to tell when it stops
    generalising. None are held out where fewer than HELDOUT_MIN_REJECTED may be or no training pair would be
    left."""
    count = min(round(config.holdout * len(rejected)), HELDOUT_MAX_PIECES)
    if config.holdout == 0 or len(rejected) < HELDOUT_MIN_REJECTED or count == 0:
        return pairs, []
    held = set(random.Random(f"notagen-dpo-holdout:{config.seed}:{iteration}").sample(rejected, count))
    train = [p for p in pairs if p[1] not in held]
    return (train, [p for p in pairs if p[1] in held]) if train else (pairs, [])


@torch.no_grad()
def heldout_loss(policy: NotaGen, chosen: list, rejected: list, held: list[tuple[int, int]], ref_c: torch.Tensor,
                 ref_r: torch.Tensor, config: DPOConfig, amp: Amp) -> float:
    """The mean DPOP loss of the held-out pairs under the policy now (log 2 while it is the reference)."""
    ci, rj = sorted({i for i, _ in held}), sorted({j for _, j in held})
    pol_c = dict(zip(ci, measure_logprobs(policy, [chosen[i] for i in ci], config.logprob_batch, amp.autocast)))
    pol_r = dict(zip(rj, measure_logprobs(policy, [rejected[j] for j in rj], config.logprob_batch, amp.autocast)))
    losses, _, _ = dpo_loss(torch.stack([pol_c[i] for i, _ in held]), torch.stack([pol_r[j] for _, j in held]),
                            ref_c[[i for i, _ in held]], ref_r[[j for _, j in held]], config.beta, config.lam)
    return float(losses.mean())


def heldout_candidates(preference: Preference) -> list[int]:
    """The rejected pieces whose pairs may be held out: the generated ones (what the user judged is always learnt)."""
    return [j for j, r in enumerate(preference.rejected) if r.source != "human"]


def optimise(policy: NotaGen, reference: NotaGen, preference: Preference, config: DPOConfig, iteration: int,
             device: torch.device, on_step: Callable[[dict], None] | None = None,
             should_stop: Callable[[], bool] | None = None) -> OptimiseStats:
    """DPOP steps on random (chosen, rejected) training pairs, `config.optimiser_steps(training pairs)` of them,
    stopped early when the held-out pairs' loss has not fallen for HELDOUT_PATIENCE checks (`split_heldout`);
    the reference's log-probs are measured once."""
    every_pair = preference.pairs()
    stats = OptimiseStats(pairs=len(every_pair))
    if not every_pair:
        raise DPOError(f"iteration {iteration}: no preference pairs ({len(preference.chosen)} chosen, "
                       f"{len(preference.rejected)} rejected); generate more samples or rate pieces")
    pairs, held = split_heldout(every_pair, heldout_candidates(preference), config, iteration)
    stats.heldout_pairs = len(held)
    steps = stats.planned_steps = config.optimiser_steps(len(pairs))
    check_every = max(1, steps // HELDOUT_CHECKS)
    amp = Amp.create(device, resolve_precision(config.precision, device))
    patchilizer = Patchilizer(policy.config.patch_size)
    length = policy.config.patch_length
    try:
        chosen = encode_candidates(preference.chosen, patchilizer, length)
        rejected = encode_candidates(preference.rejected, patchilizer, length)
    except NotaGenError as e:
        raise DPOError(f"iteration {iteration}: a chosen or rejected piece cannot be encoded: {e}") from None
    stats.mean_patches = sum(map(len, chosen + rejected)) / len(chosen + rejected)
    batch = config.logprob_batch
    ref_c = measure_logprobs(reference, chosen, batch, amp.autocast)
    ref_r = measure_logprobs(reference, rejected, batch, amp.autocast)
    pol_c = measure_logprobs(policy, chosen, batch, amp.autocast)
    pol_r = measure_logprobs(policy, rejected, batch, amp.autocast)
    stats.margin_before = _mean_margin(pol_c, pol_r)
    stats.chosen_logprob_before = float(pol_c.mean())

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    optimizer = build_optimizer(policy, config, device)
    scheduler = build_scheduler(optimizer, WarmupDecay(config.warmup_steps, steps, "constant"))
    rng = random.Random(f"notagen-dpo:{config.seed}:{iteration}")
    losses_seen = []
    if held:
        stats.heldout_loss_first = stats.heldout_loss_best = stats.heldout_loss_last = heldout_loss(
            policy, chosen, rejected, held, ref_c, ref_r, config, amp)
    stale = 0
    started = time.perf_counter()
    for step in range(steps):
        drawn = [pairs[rng.randrange(len(pairs))] for _ in range(config.pairs_per_step)]
        ci, ri = [i for i, _ in drawn], [j for _, j in drawn]
        patches, masks = pad_patches([chosen[i] for i in ci] + [rejected[j] for j in ri], policy.config.patch_size)
        losses, chosen_rewards, rejected_rewards, stepped, norm = dpo_step(
            policy, optimizer, amp, patches.to(device), masks.to(device), ref_c[ci].to(device), ref_r[ri].to(device),
            config)
        value = float(losses.mean())
        if stepped:
            scheduler.step()
        stats.steps = step + 1
        losses_seen.append(value)
        if stats.loss_first is None:
            stats.loss_first = value
        if on_step:
            on_step({"event": "step", "iteration": iteration, "step": step + 1, "steps": steps,
                     "loss": value, "grad_norm": norm, "chosen_reward": float(chosen_rewards.mean()),
                     "rejected_reward": float(rejected_rewards.mean()),
                     "drawn": [[preference.chosen[i].name, preference.rejected[j].name] for i, j in drawn]})
        if should_stop and should_stop():
            stats.cancelled = True
            break
        if held and (step + 1) % check_every == 0 and step + 1 < steps:
            stats.heldout_loss_last = heldout_loss(policy, chosen, rejected, held, ref_c, ref_r, config, amp)
            if stats.heldout_loss_last < stats.heldout_loss_best - 1e-4:
                stats.heldout_loss_best, stale = stats.heldout_loss_last, 0
            else:
                stale += 1
            if stale >= HELDOUT_PATIENCE:
                stats.stopped_early = (f"stopped learning at step {step + 1} of {steps}: the loss of the {len(held)} "
                                       f"held-out pair{'s' if len(held) != 1 else ''} had not fallen for "
                                       f"{HELDOUT_PATIENCE} checks ({stats.heldout_loss_best:.3f} at best)")
                break
    if stats.steps:
        stats.seconds_per_step = (time.perf_counter() - started) / stats.steps
    if device.type == "cuda":
        stats.peak_memory_bytes = int(torch.cuda.max_memory_allocated(device))
    if losses_seen:
        tail = losses_seen[-max(1, len(losses_seen) // 10):]
        stats.loss_last = sum(tail) / len(tail)
    pol_c = measure_logprobs(policy, chosen, batch, amp.autocast)
    pol_r = measure_logprobs(policy, rejected, batch, amp.autocast)
    stats.margin_after = _mean_margin(pol_c, pol_r)
    stats.chosen_logprob_after = float(pol_c.mean())
    wins = [(pol_c[i] - ref_c[i]) > (pol_r[j] - ref_r[j]) for i, j in pairs]
    stats.reward_accuracy = float(sum(bool(w) for w in wins) / len(wins))
    return stats


# ---------------------------------------------------------------- the run

class TooFewPairs(Exception):
    """An iteration's selection left fewer pairs than `min_pairs`; the message says why."""


class DPORun:
    """One run; `run_dpo()` is the front door."""

    def __init__(self, config: DPOConfig, ratings: list[HumanJudgement] | None,
                 candidate_source: CandidateSource | None,
                 on_log: Callable[[dict], None] | None, on_progress: Progress | None,
                 should_stop: Callable[[], bool] | None):
        self.config = config
        self.ratings = list(ratings or [])
        self.candidate_source = candidate_source
        self.on_log = on_log
        self.on_progress = on_progress
        self.should_stop = should_stop
        self.device = resolve_device(config.device)
        self.results: list[IterationResult] = []
        self.measured: list[SampleFigures] = []
        # what this device did, for the next run's estimate (estimate.py: measured_rates)
        self.rates = {"device": self.device.type, "chars": 0, "generation_seconds": 0.0,
                      "seconds_per_step": None, "step_patches": None, "parameters": None}

    # -- reporting
    def emit(self, record: dict):
        if self.on_log:
            self.on_log({"time": round(time.time(), 3), **record})

    def say(self, text: str, event: str = "stage", **record):
        self.emit({"event": event, "text": text, **record})

    def stage(self, text: str, total: int):
        """A new stage: its words, then its progress from 0."""
        self.say(text, total=total)
        self.progress(0, total)

    def progress(self, done: int, total: int):
        if self.on_progress:
            self.on_progress(done, total)

    def stopped(self) -> bool:
        return bool(self.should_stop and self.should_stop())

    # -- pieces
    def candidates(self, iteration: int, model_path: Path, folder: Path, what: str) -> list[Candidate]:
        c = self.config
        if (c.samples == 0 or self.judge is None) and self.candidate_source is None:
            return []  # the user's judgements only: without a scorer no generated piece could enter a pair
        total = generation_work(c, c.samples)
        limit = f" of up to {c.max_patches} patches" if c.max_patches else ""
        self.stage(f"{what}: writing {c.samples} pieces{limit}", total)
        if self.candidate_source is not None:
            found = self.candidate_source(iteration, model_path)
            self.progress(total, total)
            return found
        started = time.perf_counter()
        found = generate_candidates(model_path, self.prompts, c, iteration, folder / "samples",
                                    on_progress=self.progress, should_stop=self.should_stop)
        self.rates["chars"] += sum(x.chars for x in found)
        self.rates["generation_seconds"] += time.perf_counter() - started
        return found

    def take_measure(self, candidates: list[Candidate], model_path: Path, label: str, what: str) -> SampleFigures:
        """Score and count a model's pieces; flag the iteration that made the model if it lowered the usable share."""
        figures = self.judge.measure(candidates, model_path, label)
        self.measured.append(figures)
        self.say(f"{what}: {figures.describe()}", event="scored", figures=figures.to_dict(),
                 mean_score=figures.mean_score)
        if len(self.measured) >= 2 and self.results:
            made_by = self.results[len(self.measured) - 2]
            made_by.usable_after = figures.usable_share
            made_by.lowered_usable = lowered_usable(self.measured[-2], figures)
            if made_by.lowered_usable:
                self.say(flag_text(made_by.iteration, self.measured[-2], figures), event="flag",
                         iteration=made_by.iteration)
        return figures

    # -- the summary
    def write_summary(self, status: str, final_model: Path, message: str = "") -> Path:
        c = self.config
        final_score = self.measured[len(self.results)].mean_score if len(self.measured) > len(self.results) else None
        summary = {"status": status, "message": message, "config": c.to_dict(), "device": str(self.device),
                   "scorer": c.scorer, "plagiarism_threshold": self.threshold, "final_model": str(final_model),
                   "mean_scores": [r.mean_score for r in self.results] + [final_score],
                   "mean_score_labels": [f"iteration {r.iteration} samples (model {r.start_model})"
                                         for r in self.results] + ["final model samples"],
                   "models": [f.to_dict() for f in self.measured],
                   "iterations": [r.to_dict() for r in self.results],
                   "rates": self.rates}
        return atomic_write_text(c.out_dir / SUMMARY, json.dumps(summary, indent=2) + "\n")

    # -- one iteration
    def select(self, k: int, candidates: list[Candidate], folder: Path) -> Preference:
        c = self.config
        if self.judge is not None:
            preference = select_preferences(candidates, c.portion, self.threshold)
        else:
            preference = Preference()
            for x in candidates:
                x.decision, x.reason = "unused", "no scorer: only the user's judgements form pairs"
        merge_ratings(preference, self.ratings)
        atomic_write_text(folder / "scores.csv", scores_csv(candidates + [x for x in preference.chosen + preference.rejected
                                                                          if x.source == "human"]))
        atomic_write_text(folder / "preference.json", json.dumps(
            preference.record(iteration=k, portion=c.portion, plagiarism_threshold=self.threshold,
                              scorer=c.scorer), indent=2) + "\n")
        return preference

    def too_few_pairs(self, k: int, candidates: list[Candidate], preference: Preference) -> str:
        """Why iteration `k` stops the run, in words: how few pairs, and what became of the pieces."""
        c, pairs = self.config, len(preference.pairs())
        what = (why_few_pairs(candidates, preference) if self.judge is not None
                else f"the user's judgements are {describe_judgements(self.ratings)}")
        few = "no preference pairs" if not pairs else f"only {pairs} preference pair{'s' if pairs > 1 else ''}"
        return (f"iteration {k} of {c.iterations}: {few}, fewer than the minimum of {c.min_pairs} (minimum pairs): "
                f"{what}")

    def iteration(self, k: int, model_path: Path) -> tuple[IterationResult, Path | None]:
        c = self.config
        t0 = time.monotonic()
        folder = c.out_dir / f"iter_{k}"
        folder.mkdir(parents=True, exist_ok=True)
        what = f"iteration {k} of {c.iterations}"
        candidates = self.candidates(k, model_path, folder, what)
        figures = None
        if self.judge is not None:
            label = "starting model" if k == 1 else f"after iteration {k - 1}"
            figures = self.take_measure(candidates, model_path, label, what)
        result = IterationResult(iteration=k, start_model=str(model_path), checkpoint=None,
                                 mean_score=figures.mean_score if figures else None, generated=len(candidates),
                                 scored=sum(x.score is not None for x in candidates), chosen=0, rejected=0, pairs=0,
                                 seconds=0.0, figures=figures)
        self.results.append(result)
        preference = self.select(k, candidates, folder)
        result.chosen, result.rejected = len(preference.chosen), len(preference.rejected)
        result.pairs = len(preference.pairs())
        if self.stopped():
            result.optimise.cancelled = True
            result.seconds = time.monotonic() - t0
            return result, None
        if result.pairs < c.min_pairs:
            raise TooFewPairs(self.too_few_pairs(k, candidates, preference))
        policy, reference, card = load_policy_and_reference(model_path, c, self.device)
        self.rates["parameters"] = count_parameters(policy.config)
        training, held = split_heldout(preference.pairs(), heldout_candidates(preference), c, k)
        steps = c.optimiser_steps(len(training))
        aside = f"; the pairs of {len({j for _, j in held})} held out" if held else ""
        self.stage(f"{what}: learning from {result.pairs} pairs ({result.chosen} chosen, {result.rejected} "
                   f"rejected pieces{aside}), up to {steps} steps", steps)

        def on_step(record):
            self.emit(record)
            self.progress(record["step"], record["steps"])

        result.optimise = optimise(policy, reference, preference, c, k, self.device, on_step, self.should_stop)
        if result.optimise.stopped_early:
            self.say(f"{what}: {result.optimise.stopped_early}", event="stopped_early", iteration=k)
        self.rates["seconds_per_step"] = result.optimise.seconds_per_step
        self.rates["step_patches"] = result.optimise.mean_patches
        new_path = None
        if not result.optimise.cancelled:
            new_path = folder / MODEL_NAME
            prompts = union_prompts(prompt_vocabulary(model_path, card), self.prompts)
            mean = result.mean_score
            new_card = ModelCard(config=policy.config, prompts=[p.line for p in prompts],
                                 base_model=card.base_model or Path(model_path).name,
                                 header_choices=card.header_choices,
                                 notes=(f"CLaMP-DPO iteration {k} of {c.iterations} from {Path(model_path).name}: "
                                        f"{c.scorer} scorer, beta {c.beta}, lambda {c.lam}, {result.optimise.steps} "
                                        f"steps at lr {c.lr} on {result.pairs} pairs; its start model's samples: "
                                        f"{figures.describe() if figures else 'not scored'}; mean score {mean}"))
            save_checkpoint(new_path, policy, new_card)
            write_prompts(folder / "prompts.txt", prompts)
            result.checkpoint = str(new_path)
        del policy, reference
        release(self.device)
        result.seconds = time.monotonic() - t0
        return result, new_path

    # -- the run
    def kept_model(self, last: Path) -> tuple[Path, str]:
        """The result: the last model, or with `keep_best` the best measured one; and why, in words."""
        if not self.config.keep_best:
            return last, ""
        best = best_model(self.measured)
        if best is None:
            return last, "no model was measured, so the last one is kept"
        why = (f"kept the {best.label} ({best.model}): the highest usable share x mean score, "
               f"{best.usable_share:.0%} x {best.mean_score or 0:.3f}")
        return Path(best.model), why

    def run(self) -> DPOResult:
        c = self.config
        if not c.model.is_file():
            raise DPOError(f"{c.model}: no such checkpoint file")
        if c.scorer == "none" and not self.ratings:
            raise DPOError("without a scorer, preference pairs come only from your judgements: rate some pieces "
                           "or judge one piece better than another")
        listed = c.data_dir / "prompts.txt"
        generating = c.samples > 0 and c.scorer != "none" and self.candidate_source is None
        self.prompts = dataset_prompt_list(c.data_dir) if generating else (read_prompts(listed) if listed.is_file()
                                                                           else [])
        self.judge = Judge.for_run(c, self.device)
        self.threshold = self.judge.threshold if self.judge else None
        c.out_dir.mkdir(parents=True, exist_ok=True)
        self.emit({"event": "start", "iterations": c.iterations, "device": str(self.device), "scorer": c.scorer})
        model_path, status, message = c.model, "finished", ""
        for k in range(1, c.iterations + 1):
            try:
                result, new_path = self.iteration(k, model_path)
            except TooFewPairs as e:
                if k == 1:
                    self.write_summary("stopped", model_path, str(e))
                    raise DPOError(f"{e}; no model was made (the pieces and their scores are in "
                                   f"{c.out_dir / 'iter_1'})") from None
                status, message = "stopped", f"{e}; the model of iteration {k - 1} is the result"
                self.say(message, event="stopped")
                break
            self.emit({"event": "iteration", **result.to_dict()})
            if new_path is None:
                status = "cancelled"
                break
            model_path = new_path
            self.write_summary("running", model_path)
        measure_last = c.score_final or c.keep_best
        if (status == "finished" and self.judge is not None and measure_last and not self.stopped()
                and len(self.measured) == len(self.results)):
            final = c.out_dir / "final"
            candidates = self.candidates(0, model_path, final, "the final model")
            self.take_measure(candidates, model_path, f"after iteration {len(self.results)}", "the final model")
            atomic_write_text(final / "scores.csv", scores_csv(candidates))
            self.emit({"event": "final", "mean_score": self.measured[-1].mean_score})
        if status == "finished" and self.stopped():
            status = "cancelled"
        kept, why = self.kept_model(model_path)
        flagged = [str(r.iteration) for r in self.results if r.lowered_usable]
        flags = (f"iteration{'s' if len(flagged) > 1 else ''} {', '.join(flagged)} lowered the usable share"
                 if flagged else "")
        message = "; ".join(x for x in (message, flags, why) if x)
        summary = self.write_summary(status, kept, message)
        self.say(self.closing_line(status, kept, message), event="end", status=status)
        final_score = self.measured[len(self.results)].mean_score if len(self.measured) > len(self.results) else None
        return DPOResult(status=status, iterations=self.results, final_mean_score=final_score, final_model=kept,
                         summary_path=summary, message=message, measured=list(self.measured))

    @staticmethod
    def closing_line(status: str, kept: Path, message: str) -> str:
        return f"{status}: the model is {kept}" + (f" ({message})" if message else "")


def run_dpo(config: DPOConfig, ratings: list[HumanJudgement] | None = None,
            candidate_source: CandidateSource | None = None, on_log: Callable[[dict], None] | None = None,
            on_progress: Progress | None = None,
            should_stop: Callable[[], bool] | None = None) -> DPOResult:
    """Run `config.iterations` CLaMP-DPO iterations into `config.out_dir`.

    `ratings`: the user's judgements, added to every iteration's pairs (alone with `scorer="none"`,
    when no piece is generated): pieces rated +1 (chosen) or -1 (rejected), and pairs judged
    "better than worse" (one pair each, `HumanPair`). `candidate_source(iteration, model_path)`: pieces to
    score instead of generating them (iteration 0 is the final evaluation); None generates
    `config.samples` pieces. `on_log(record)` gets stage and step records (those a musician
    reads carry `text`), `on_progress(done, total)` counts the current stage's work from 0,
    `should_stop()` is polled between generation batches and after every step: a stopped run
    saves no half-optimised model and returns status "cancelled". An iteration with fewer than
    `min_pairs` pairs stops the run (status "stopped", the model so far kept); at the first
    iteration that is a DPOError saying what became of the pieces.
    """
    return DPORun(config, ratings, candidate_source, on_log, on_progress, should_stop).run()
