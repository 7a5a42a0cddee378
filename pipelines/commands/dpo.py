"""`notagen dpo`: CLaMP-DPO iterations on a model against a dataset's pieces (and/or the user's judgements:
rated pieces and "A is better than B" pairs, `--ratings`).

Before it starts it prints the memory of one step and how long the run may take; while it runs,
each stage; at the end, per model: the share of its pieces that end, the share usable and the
mean score, with the pairs each iteration learnt from and a flag where an iteration lowered the
usable share. Ctrl-C stops after the current generation batch or optimiser step; the iteration
in progress saves no model and summary.json says "cancelled".
"""
from __future__ import annotations

import json
from pathlib import Path

from pipelines.commands.interrupt import ctrl_c_stops
from pipelines.dpo.config import DPOConfig
from pipelines.errors import DPOError
from pipelines.fields import add_option, values_of

# DPOConfig fields with a flag; defaults, ranges, choices and help come from the field.
DPO_OPTIONS = ("samples", "iterations", "portion", "min_pairs", "score_final", "keep_best", "scorer", "clamp2_weights",
               "m3_weights", "plagiarism_threshold", "beta", "lam", "steps", "steps_per_pair", "holdout", "lr", "warmup_steps",
               "pairs_per_step", "top_k", "top_p", "temperature", "generation_batch", "max_patches", "max_seconds",
               "precision", "reference_dtype", "checkpointing", "optimizer", "logprob_batch", "device", "seed")
FLAGS = {"lam": "--lambda", "score_final": "--final-score"}  # the others: --field-name


def register(subparsers):
    p = subparsers.add_parser("dpo", help="CLaMP-DPO: generate, score, prefer and optimise, K iterations")
    p.add_argument("--model", type=Path, required=True, help="checkpoint to start from")
    p.add_argument("--data", type=Path, required=True, help="dataset folder: prompts.txt and interleaved/ references")
    p.add_argument("--out", type=Path, required=True, help="run folder: iter_K/, final/, summary.json")
    for name in DPO_OPTIONS:
        add_option(p, DPOConfig, name, FLAGS.get(name))
    p.add_argument("--ratings", type=Path,
                   help='your judgements, JSON lines: a rated piece {"abc": ..., "rating": 1 or -1, "prompt": '
                        '"P_C_I"} or a pair {"better": ..., "worse": ..., "prompt": "P_C_I"} (the better piece '
                        'chosen, the worse rejected; one pair); "name" (of a pair "better_name", "worse_name") '
                        'optional')
    p.add_argument("--quiet", action="store_true", help="no per-step lines")
    p.set_defaults(func=run_dpo_command)


def config_from_args(args) -> DPOConfig:
    """The run's settings; DPOConfig refuses values out of range with its own message."""
    return DPOConfig(model=args.model, data_dir=args.data, out_dir=args.out, **values_of(args, DPO_OPTIONS))


def read_ratings(path: Path) -> list:
    """The judgements of a `--ratings` file: HumanRating and HumanPair records."""
    from pipelines.abc.prompts import parse_prompt
    from pipelines.dpo import HumanPair, HumanRating
    from pipelines.errors import PromptError
    from pipelines.files import read_text

    ratings = []
    try:
        lines = read_text(path).splitlines()
    except FileNotFoundError:
        raise DPOError(f"{path}: no such ratings file") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            prompt = parse_prompt(record["prompt"]) if record.get("prompt") else None
            if "better" in record or "worse" in record:
                names = record.get("better_name", f"better-{n}"), record.get("worse_name", f"worse-{n}")
                ratings.append(HumanPair(record["better"], record["worse"], prompt, *names))
            else:
                ratings.append(HumanRating(record["abc"], int(record["rating"]), prompt,
                                           record.get("name", f"rated-{n}")))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, PromptError, DPOError) as e:
            raise DPOError(f"{path}:{n}: not a rating or pair record ({e})") from None
    return ratings


def report_lines(result) -> list[str]:
    """The run's figures as a table: one row per measured model, the pairs and flag of the iteration that made it."""
    rows = [f"{'model':<20} {'pieces':>6} {'ended':>6} {'usable':>6} {'mean score':>10}  pairs  note"]
    for i, m in enumerate(result.measured):
        made_by = result.iterations[i - 1] if 0 < i <= len(result.iterations) else None
        pairs = f"{made_by.pairs:>5}" if made_by else f"{'':>5}"
        note = "lowered the usable share" if made_by and made_by.lowered_usable else ""
        score = "-" if m.mean_score is None else f"{m.mean_score:.3f}"
        rows.append(f"{m.label:<20} {m.pieces:>6} {m.ended_share:>6.0%} {m.usable_share:>6.0%} {score:>10}  "
                    f"{pairs}  {note}".rstrip())
    return rows


def run_dpo_command(args) -> int:
    import torch

    from pipelines.dpo import estimate_dpo_memory, run_dpo
    from pipelines.dpo.estimate import estimate_dpo_time
    from pipelines.model.checkpoint import read_card
    from pipelines.model.network import count_parameters
    from pipelines.training.recipe import resolve_device

    config = config_from_args(args)
    ratings = read_ratings(args.ratings) if args.ratings else []
    model_config = read_card(config.model).config
    estimate = estimate_dpo_memory(model_config, config.pairs_per_step, checkpointing=config.checkpointing)
    print(f"estimated memory of one DPO step: {estimate.describe()}", flush=True)
    time_needed = estimate_dpo_time(config.to_dict(), count_parameters(model_config), model_config.patch_length,
                                    resolve_device(config.device).type)
    print(f"estimated time: {time_needed.text}", flush=True)

    def on_log(record):
        event = record["event"]
        if event == "step" and not args.quiet:
            print(f"iteration {record['iteration']} step {record['step']}/{record['steps']} loss {record['loss']:.4f} "
                  f"rewards {record['chosen_reward']:+.3f} / {record['rejected_reward']:+.3f}", flush=True)
        elif event == "iteration":
            o = record["optimise"]
            peak = f", peak CUDA memory {o['peak_memory_bytes'] / 2**30:.2f} GiB" if o["peak_memory_bytes"] else ""
            margin = (f"margin {o['margin_before']:.1f} -> {o['margin_after']:.1f} nats"
                      if o["margin_after"] is not None else "not optimised")
            print(f"iteration {record['iteration']}: {record['chosen']} chosen, {record['rejected']} rejected, "
                  f"{record['pairs']} pair{'s' if record['pairs'] != 1 else ''}, {o['steps']} steps; {margin}{peak}; "
                  f"model {record['checkpoint']}",
                  flush=True)
        elif event != "end" and record.get("text"):
            print(record["text"], flush=True)

    with ctrl_c_stops() as should_stop:
        result = run_dpo(config, ratings=ratings, on_log=on_log, should_stop=should_stop)
    if result.measured:
        print("\n".join(report_lines(result)))
    message = f" ({result.message})" if result.message else ""
    print(f"{result.status}: model {result.final_model}; summary {result.summary_path}{message}")
    if torch.cuda.is_available():
        print(f"peak CUDA memory of the last optimisation: {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")
    return 0 if result.status in ("finished", "stopped") else 130
