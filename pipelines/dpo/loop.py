"""CLaMP-DPO iterations: generate, score, choose and reject, optimise DPOP, save; K times in a row.

Run folder:

    iter_K/samples/<name>.abc, <name>.raw.abc   post-processed and as-generated pieces
    iter_K/scores.csv                            name, prompt, seed, status, score, nearest reference, decision
    iter_K/preference.json                       chosen, rejected and skipped pieces, each with score and reason
    iter_K/model.pth, iter_K/prompts.txt         the optimised model (card included) and its prompt vocabulary
    final/samples/, final/scores.csv             pieces of the last model, scored (the last mean score)
    summary.json                                 settings, status, per-iteration figures, mean score per iteration

Each iteration starts from the previous one's model, which is both the policy (fp32
master weights, autocast) and the frozen reference (bf16 on GPU, no gradients).
"""
from __future__ import annotations

import csv
import io
import json
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from pipelines.abc.prompts import Prompt, read_prompts, write_prompts
from pipelines.abc.tokenizer import Patchilizer, pad_patches
from pipelines.dpo.config import DPOConfig
from pipelines.dpo.logprobs import encode_pieces, measure_logprobs, sequence_logprobs, training_text
from pipelines.dpo.loss import dpo_loss
from pipelines.dpo.preference import Candidate, HumanRating, Preference, merge_ratings, select_preferences
from pipelines.dpo.scorers import BuiltinScorer, Scorer, cosine_to_mean, nearest_reference
from pipelines.errors import DPOError, NotaGenError
from pipelines.files import atomic_write_text
from pipelines.generation.engine import Engine, GenerationRequest
from pipelines.generation.options import GenerationLimits, SamplingConfig
from pipelines.model.checkpoint import ModelCard, save_checkpoint
from pipelines.model.lora import load_model
from pipelines.model.network import NotaGen
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
    skipped: int
    seconds: float
    optimise: OptimiseStats = field(default_factory=OptimiseStats)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class DPOResult:
    status: str  # finished | cancelled
    iterations: list[IterationResult]
    final_mean_score: float | None
    final_model: Path
    summary_path: Path

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
            out.append((path.stem, path.read_text(encoding="utf-8")))
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


def generate_candidates(model_path: Path, prompts: list[Prompt], config: DPOConfig, iteration: int,
                        samples_dir: Path, on_piece: Callable[[int], None] | None = None,
                        should_stop: Callable[[], bool] | None = None, rank: int = 0,
                        world: int = 1) -> list[Candidate]:
    """`config.samples` pieces over the prompts (cycled), in batches; written to `samples_dir`.

    With `world` > 1 (processes started by accelerate / torchrun, process group set up),
    process `rank` generates only its share of the batches (`shard_requests`) and every process
    returns all the pieces (`gather_candidates`). A piece's draws depend only on its seed and its
    batches are the ones a single process makes, so the set is the one a single process makes.
    """
    loaded = load_model(model_path, device="cpu")
    runtime = pick_runtime(config.device, None)
    engine = Engine(loaded.model, runtime, name=Path(model_path).name, card=loaded.card)
    sampling = SamplingConfig(config.top_k, config.top_p, config.temperature)
    # No bar redraws: DPO learns from what the model writes on its own, so a misaligned piece
    # must reach the scorer as the model wrote it (a redraw would hide the very fault to unlearn).
    limits = GenerationLimits(max_patches=config.max_patches, max_seconds=config.max_seconds, bar_retries=0)
    candidates: list[Candidate] = []
    try:
        for indices in shard_requests(config.samples, config.generation_batch, rank, world):
            if should_stop and should_stop():
                break
            requests = [GenerationRequest(prompt=prompts[i % len(prompts)], seed=sample_seed(config, iteration, i))
                        for i in indices]
            for i, piece in zip(indices, engine.generate(requests, sampling, limits, should_stop=should_stop)):
                name = f"sample_{i + 1:04d}"
                atomic_write_text(samples_dir / f"{name}.raw.abc", piece.raw)
                if piece.abc is not None:
                    atomic_write_text(samples_dir / f"{name}.abc", piece.abc)
                candidates.append(Candidate(name=name, text=piece.raw, abc=piece.abc, prompt=piece.request.prompt,
                                            seed=piece.request.seed, status=piece.status, reason=piece.reason))
            if on_piece:
                on_piece(len(indices))
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
    writer.writerow(["name", "source", "prompt", "seed", "status", "score", "nearest_reference",
                     "nearest_similarity", "decision", "reason"])
    for c in candidates:
        writer.writerow([c.name, c.source, c.prompt.line if c.prompt else "", "" if c.seed is None else c.seed,
                         c.status, "" if c.score is None else f"{c.score:.6f}", c.nearest_reference,
                         "" if c.nearest_similarity is None else f"{c.nearest_similarity:.6f}", c.decision, c.reason])
    return buffer.getvalue()


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


def optimise(policy: NotaGen, reference: NotaGen, preference: Preference, config: DPOConfig, iteration: int,
             device: torch.device, on_step: Callable[[dict], None] | None = None,
             should_stop: Callable[[], bool] | None = None) -> OptimiseStats:
    """DPOP steps on random (chosen, rejected) pairs; the reference's log-probs are measured once."""
    pairs = preference.pairs()
    stats = OptimiseStats(pairs=len(pairs))
    if not pairs:
        raise DPOError(f"iteration {iteration}: no preference pairs ({len(preference.chosen)} chosen, "
                       f"{len(preference.rejected)} rejected); generate more samples or rate pieces")
    amp = Amp.create(device, resolve_precision(config.precision, device))
    patchilizer = Patchilizer(policy.config.patch_size)
    length = policy.config.patch_length
    try:
        chosen = encode_pieces([training_text(c.text, c.prompt) for c in preference.chosen], patchilizer, length)
        rejected = encode_pieces([training_text(c.text, c.prompt) for c in preference.rejected], patchilizer, length)
    except NotaGenError as e:
        raise DPOError(f"iteration {iteration}: a chosen or rejected piece cannot be encoded: {e}") from None
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
    scheduler = build_scheduler(optimizer, WarmupDecay(config.warmup_steps, config.steps, "constant"))
    rng = random.Random(f"notagen-dpo:{config.seed}:{iteration}")
    losses_seen = []
    for step in range(config.steps):
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
            on_step({"event": "step", "iteration": iteration, "step": step + 1, "steps": config.steps,
                     "loss": value, "grad_norm": norm, "chosen_reward": float(chosen_rewards.mean()),
                     "rejected_reward": float(rejected_rewards.mean())})
        if should_stop and should_stop():
            stats.cancelled = True
            break
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

class DPORun:
    """One run; `run_dpo()` is the front door."""

    def __init__(self, config: DPOConfig, ratings: list[HumanRating] | None, candidate_source: CandidateSource | None,
                 on_log: Callable[[dict], None] | None, on_progress: Callable[[int, int], None] | None,
                 should_stop: Callable[[], bool] | None):
        self.config = config
        self.ratings = list(ratings or [])
        self.candidate_source = candidate_source
        self.on_log = on_log
        self.on_progress = on_progress
        self.should_stop = should_stop
        self.device = resolve_device(config.device)
        self.done = 0
        final = config.samples if config.score_final and config.scorer != "none" else 0
        self.total = config.iterations * (config.samples + config.steps) + final
        self.results: list[IterationResult] = []

    def emit(self, record: dict):
        if self.on_log:
            self.on_log({"time": round(time.time(), 3), **record})

    def advance(self, amount: int):
        self.done = min(self.total, self.done + amount)
        if self.on_progress:
            self.on_progress(self.done, self.total)

    def stopped(self) -> bool:
        return bool(self.should_stop and self.should_stop())

    def candidates(self, iteration: int, model_path: Path, folder: Path) -> list[Candidate]:
        if self.candidate_source is not None:
            found = self.candidate_source(iteration, model_path)
            self.advance(self.config.samples)
            return found
        if self.config.samples == 0:
            return []
        return generate_candidates(model_path, self.prompts, self.config, iteration, folder / "samples",
                                   on_piece=self.advance, should_stop=self.should_stop)

    def score(self, candidates: list[Candidate]) -> float | None:
        if self.scorer is None:
            return None
        return score_candidates(candidates, self.scorer, self.references, self.reference_features)

    def write_summary(self, status: str, final_score: float | None, final_model: Path) -> Path:
        c = self.config
        summary = {"status": status, "config": c.to_dict(), "device": str(self.device),
                   "scorer": c.scorer, "plagiarism_threshold": self.threshold, "final_model": str(final_model),
                   "mean_scores": [r.mean_score for r in self.results] + [final_score],
                   "mean_score_labels": [f"iteration {r.iteration} samples (model {r.start_model})"
                                         for r in self.results] + ["final model samples"],
                   "iterations": [r.to_dict() for r in self.results]}
        return atomic_write_text(c.out_dir / SUMMARY, json.dumps(summary, indent=2) + "\n")

    def iteration(self, k: int, model_path: Path) -> tuple[IterationResult, Path | None]:
        c = self.config
        t0 = time.monotonic()
        folder = c.out_dir / f"iter_{k}"
        folder.mkdir(parents=True, exist_ok=True)
        self.emit({"event": "generate", "iteration": k, "model": str(model_path), "samples": c.samples})
        candidates = self.candidates(k, model_path, folder)
        mean_score = self.score(candidates)
        self.emit({"event": "scored", "iteration": k, "mean_score": mean_score,
                   "ok": sum(x.abc is not None for x in candidates), "generated": len(candidates)})
        if self.scorer is not None:
            preference = select_preferences(candidates, c.portion, self.threshold)
        else:
            preference = Preference()
            for x in candidates:
                x.decision, x.reason = "unused", "no scorer: only rated pieces form pairs"
        merge_ratings(preference, self.ratings)
        atomic_write_text(folder / "scores.csv", scores_csv(candidates + [x for x in preference.chosen + preference.rejected
                                                                          if x.source == "human"]))
        atomic_write_text(folder / "preference.json", json.dumps(
            preference.record(iteration=k, portion=c.portion, plagiarism_threshold=self.threshold,
                              scorer=c.scorer), indent=2) + "\n")
        result = IterationResult(iteration=k, start_model=str(model_path), checkpoint=None, mean_score=mean_score,
                                 generated=len(candidates), scored=sum(x.score is not None for x in candidates),
                                 chosen=len(preference.chosen), rejected=len(preference.rejected),
                                 skipped=len(preference.skipped), seconds=0.0)
        if self.stopped():
            result.optimise.cancelled = True
            result.seconds = time.monotonic() - t0
            return result, None
        policy, reference, card = load_policy_and_reference(model_path, c, self.device)

        def on_step(record):
            self.emit(record)
            self.advance(1)

        result.optimise = optimise(policy, reference, preference, c, k, self.device, on_step, self.should_stop)
        new_path = None
        if not result.optimise.cancelled:
            new_path = folder / MODEL_NAME
            prompts = union_prompts(prompt_vocabulary(model_path, card), self.prompts)
            new_card = ModelCard(config=policy.config, prompts=[p.line for p in prompts],
                                 base_model=card.base_model or Path(model_path).name,
                                 header_choices=card.header_choices,
                                 notes=(f"CLaMP-DPO iteration {k} of {c.iterations} from {Path(model_path).name}: "
                                        f"{c.scorer} scorer, beta {c.beta}, lambda {c.lam}, {result.optimise.steps} "
                                        f"steps at lr {c.lr}; mean score of its start model's samples {mean_score}"))
            save_checkpoint(new_path, policy, new_card)
            write_prompts(folder / "prompts.txt", prompts)
            result.checkpoint = str(new_path)
        del policy, reference
        release(self.device)
        result.seconds = time.monotonic() - t0
        return result, new_path

    def run(self) -> DPOResult:
        c = self.config
        if not c.model.is_file():
            raise DPOError(f"{c.model}: no such checkpoint file")
        if c.scorer == "none" and not self.ratings:
            raise DPOError("without a scorer, preference pairs come only from rated pieces: give some ratings")
        listed = c.data_dir / "prompts.txt"
        generating = c.samples > 0 and self.candidate_source is None
        self.prompts = dataset_prompt_list(c.data_dir) if generating else (read_prompts(listed) if listed.is_file()
                                                                           else [])
        self.scorer = build_scorer(c, self.device)
        self.threshold = (c.plagiarism_threshold if c.plagiarism_threshold is not None
                          else (self.scorer.plagiarism_threshold if self.scorer else None))
        if self.scorer is not None:
            self.references = read_references(c.data_dir)
            self.reference_features = self.scorer.features([text for _, text in self.references])
        c.out_dir.mkdir(parents=True, exist_ok=True)
        self.emit({"event": "start", "iterations": c.iterations, "device": str(self.device), "scorer": c.scorer})
        model_path, status = c.model, "finished"
        for k in range(1, c.iterations + 1):
            result, new_path = self.iteration(k, model_path)
            self.results.append(result)
            self.emit({"event": "iteration", **result.to_dict()})
            if new_path is None:
                status = "cancelled"
                break
            model_path = new_path
            self.write_summary("running", None, model_path)
        final_score = None
        if status == "finished" and self.scorer is not None and c.score_final and not self.stopped():
            final = c.out_dir / "final"
            candidates = self.candidates(0, model_path, final)
            final_score = self.score(candidates)
            for x in candidates:
                x.decision = x.decision or ("scored" if x.score is not None else "failed")
            atomic_write_text(final / "scores.csv", scores_csv(candidates))
            self.emit({"event": "final", "mean_score": final_score})
        elif status == "finished" and self.stopped():
            status = "cancelled"
        summary = self.write_summary(status, final_score, model_path)
        self.emit({"event": "end", "status": status})
        return DPOResult(status=status, iterations=self.results, final_mean_score=final_score,
                         final_model=model_path, summary_path=summary)


def run_dpo(config: DPOConfig, ratings: list[HumanRating] | None = None,
            candidate_source: CandidateSource | None = None, on_log: Callable[[dict], None] | None = None,
            on_progress: Callable[[int, int], None] | None = None,
            should_stop: Callable[[], bool] | None = None) -> DPOResult:
    """Run `config.iterations` CLaMP-DPO iterations into `config.out_dir`.

    `ratings`: pieces the user rated (+1 chosen, -1 rejected), added to every iteration's
    pairs (alone with `scorer="none"`). `candidate_source(iteration, model_path)`: pieces to
    score instead of generating them (iteration 0 is the final evaluation); None generates
    `config.samples` pieces. `on_log(record)` gets stage and step records, `on_progress(done,
    total)` counts generated pieces and optimiser steps, `should_stop()` is polled between
    generation batches and after every step: a stopped run saves no half-optimised model and
    returns status "cancelled".
    """
    return DPORun(config, ratings, candidate_source, on_log, on_progress, should_stop).run()
