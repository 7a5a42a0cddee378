"""`notagen dpo`: CLaMP-DPO iterations on a model against a dataset's pieces (and/or rated pieces).

Ctrl-C stops after the current generation batch or optimiser step; the iteration in
progress saves no model and summary.json says "cancelled".
"""
from __future__ import annotations

import json
from pathlib import Path

from pipelines.commands.interrupt import ctrl_c_stops
from pipelines.dpo.config import CHECKPOINTING, SCORERS
from pipelines.errors import DPOError


def register(subparsers):
    p = subparsers.add_parser("dpo", help="CLaMP-DPO: generate, score, prefer and optimise, K iterations")
    p.add_argument("--model", type=Path, required=True, help="checkpoint to start from")
    p.add_argument("--data", type=Path, required=True, help="dataset folder: prompts.txt and interleaved/ references")
    p.add_argument("--out", type=Path, required=True, help="run folder: iter_K/, final/, summary.json")
    p.add_argument("--samples", type=int, default=200, help="pieces generated per iteration")
    p.add_argument("--iterations", type=int, default=1)
    p.add_argument("--portion", type=float, default=0.1, help="top share chosen, bottom share rejected")
    p.add_argument("--no-final-score", action="store_true",
                   help="skip generating and scoring pieces of the last model (its mean score)")
    p.add_argument("--scorer", choices=SCORERS, default="builtin", help="none: rated pieces only (--ratings)")
    p.add_argument("--clamp2-weights", type=Path, help="the official CLaMP 2 .pth (sander-wood/clamp2 on Hugging Face)")
    p.add_argument("--m3-weights", type=Path, help="the official M3 .pth (optional; CLaMP 2's file already holds it)")
    p.add_argument("--plagiarism-threshold", type=float, default=None,
                   help="similarity to one reference piece that counts as a copy (default: 0.95 CLaMP 2, 0.985 builtin)")
    p.add_argument("--ratings", type=Path, help='JSON lines {"abc": ..., "rating": 1 or -1, "prompt": "P_C_I"}')
    p.add_argument("--beta", type=float, default=0.1)
    p.add_argument("--lambda", dest="lam", type=float, default=10.0)
    p.add_argument("--steps", type=int, default=500, help="optimiser steps per iteration")
    p.add_argument("--lr", type=float, default=1e-6)
    p.add_argument("--pairs-per-step", type=int, default=1)
    p.add_argument("--generation-batch", type=int, default=16)
    p.add_argument("--max-patches", type=int, default=0, help="patches per generated piece (0: no limit)")
    p.add_argument("--checkpointing", choices=CHECKPOINTING, default="char")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no per-step lines")
    p.set_defaults(func=run_dpo_command)


def read_ratings(path: Path) -> list:
    from pipelines.abc.prompts import parse_prompt
    from pipelines.dpo import HumanRating
    from pipelines.errors import PromptError

    ratings = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DPOError(f"{path}: no such ratings file") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            prompt = parse_prompt(record["prompt"]) if record.get("prompt") else None
            ratings.append(HumanRating(record["abc"], int(record["rating"]), prompt, record.get("name", f"rated-{n}")))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, PromptError, DPOError) as e:
            raise DPOError(f"{path}:{n}: not a rating record ({e})") from None
    return ratings


def run_dpo_command(args) -> int:
    import torch

    from pipelines.dpo import DPOConfig, estimate_dpo_memory, run_dpo
    from pipelines.model.checkpoint import read_card

    config = DPOConfig(model=args.model, data_dir=args.data, out_dir=args.out, iterations=args.iterations,
                       samples=args.samples, portion=args.portion, score_final=not args.no_final_score, scorer=args.scorer,
                       clamp2_weights=args.clamp2_weights, m3_weights=args.m3_weights,
                       plagiarism_threshold=args.plagiarism_threshold, beta=args.beta, lam=args.lam,
                       steps=args.steps, lr=args.lr, pairs_per_step=args.pairs_per_step,
                       generation_batch=args.generation_batch, max_patches=args.max_patches,
                       checkpointing=args.checkpointing, device=args.device, seed=args.seed)
    ratings = read_ratings(args.ratings) if args.ratings else []
    model_config = read_card(config.model).config
    estimate = estimate_dpo_memory(model_config, config.pairs_per_step, checkpointing=config.checkpointing)
    print(f"estimated memory of one DPO step: {estimate.describe()}", flush=True)
    def on_log(record):
        event = record["event"]
        if event == "step" and not args.quiet:
            print(f"iteration {record['iteration']} step {record['step']}/{record['steps']} loss {record['loss']:.4f} "
                  f"rewards {record['chosen_reward']:+.3f} / {record['rejected_reward']:+.3f}", flush=True)
        elif event == "scored":
            score = "n/a" if record["mean_score"] is None else f"{record['mean_score']:.4f}"
            print(f"iteration {record['iteration']}: {record['ok']} of {record['generated']} pieces usable, "
                  f"mean score {score}", flush=True)
        elif event == "iteration":
            o = record["optimise"]
            peak = f", peak CUDA memory {o['peak_memory_bytes'] / 2**30:.2f} GiB" if o["peak_memory_bytes"] else ""
            margin = (f"margin {o['margin_before']:.1f} -> {o['margin_after']:.1f} nats"
                      if o["margin_after"] is not None else "not optimised")
            print(f"iteration {record['iteration']}: {record['chosen']} chosen, {record['rejected']} rejected, "
                  f"{record['skipped']} skipped; {margin}{peak}; model {record['checkpoint']}", flush=True)
        elif event == "final":
            score = "n/a" if record["mean_score"] is None else f"{record['mean_score']:.4f}"
            print(f"final model: mean score {score}", flush=True)

    with ctrl_c_stops() as should_stop:
        result = run_dpo(config, ratings=ratings, on_log=on_log, should_stop=should_stop)
    scores = ", ".join("n/a" if s is None else f"{s:.4f}" for s in result.mean_scores)
    print(f"{result.status}: mean score per iteration {scores}; model {result.final_model}; summary {result.summary_path}")
    if torch.cuda.is_available():
        print(f"peak CUDA memory of the last optimisation: {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")
    return 0 if result.status == "finished" else 130
