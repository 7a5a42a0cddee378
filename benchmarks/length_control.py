"""How close a model's pieces land to the length asked for with `--bars N`: bars written against requested.

    python benchmarks/length_control.py                          # the demo model, 8 pieces per prompt and length
    python benchmarks/length_control.py --quick                  # 1 piece per prompt of 3, 4 bars, on the CPU
    python benchmarks/length_control.py --model CKPT --bars 8 16 32 64 --per-prompt 16 --prompts 3

`--bars N` makes the first tune-body line begin `[r:0/N-1]`: the model is told N lines are planned and
counts down from there (pipelines.generation.header). Whether it keeps that count is the model's; this
measures it. For each prompt (the model's first `--prompts`, or those given with `--prompt`) and each
length, `--per-prompt` pieces with seeds 0.. are written in batches; a piece's bars are its tune-body lines
(one bar of every voice each). Prints, per prompt and length and for the model in all: pieces that ended
well, the mean bars written, the mean error (written - asked), the mean absolute error, and the shares
exactly right and within 10% and 25%. Pieces that did not end well (a limit, a failed post-processing) are
counted in their own column and left out of the figures (their length says only where the limit fell).
"""
from __future__ import annotations

import argparse

from demo_quality import add_engine_args, generate_in_batches, load_for

from pipelines.abc.prompts import parse_prompt
from pipelines.generation.header import HeaderControls, bars_planned, length_fit


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_engine_args(ap)
    ap.add_argument("--bars", type=int, nargs="+", default=[8, 16, 32])
    ap.add_argument("--per-prompt", type=int, default=8, help="pieces per prompt and length")
    ap.add_argument("--prompts", type=int, default=3, help="how many of the model's prompts, from the first")
    ap.add_argument("--prompt", action="append", default=[], help="a Period_Composer_Instrumentation line (repeat)")
    ap.add_argument("--quick", action="store_true", help="1 piece per prompt of 3, 4 bars, on the CPU, 300 s at most")
    args = ap.parse_args()
    if args.quick:
        args.per_prompt, args.bars, args.prompts, args.device, args.max_seconds = 1, [4], 3, "cpu", 300

    from pipelines.generation.engine import GenerationRequest

    engine = load_for(args)
    prompts = [parse_prompt(line) for line in (args.prompt or engine.card.prompts[:args.prompts])]
    if not prompts:
        raise SystemExit("the model records no prompts: name some with --prompt")
    requests = [GenerationRequest(prompt, seed=seed, header=HeaderControls(bars=bars))
                for prompt in prompts for bars in args.bars for seed in range(args.per_prompt)]
    pieces, seconds = generate_in_batches(engine, requests, args)
    print(f"{args.model}: {len(pieces)} pieces in {seconds:.0f} s on {engine.runtime.device} "
          f"{engine.runtime.dtype_name}")
    planned_wrong = [p for p in pieces if p.request.header.bars and bars_planned(p.raw) not in
                     (None, p.request.header.bars)]
    if planned_wrong:  # the engine's own check: the first line must say what was asked
        raise SystemExit(f"{len(planned_wrong)} piece(s) do not begin with the planned count")

    print(f"{'prompt':<50} {'bars':>5} {'ended':>6} {'other':>6} {'mean':>6} {'error':>6} {'|error|':>8} "
          f"{'exact':>6} {'10%':>5} {'25%':>5}")
    groups = [(p.line, b) for p in prompts for b in args.bars] + [("all", b) for b in args.bars]
    for line, bars in groups:
        mine = [p for p in pieces if p.request.header.bars == bars and line in ("all", p.request.prompt.line)]
        ended = [p for p in mine if p.ok]
        fit = length_fit(bars, [p.raw for p in ended])
        mean = sum(fit.written) / len(fit.written) if fit.written else float("nan")
        print(f"{line:<50} {bars:>5} {len(ended):>6} {len(mine) - len(ended):>6} {mean:>6.1f} "
              f"{fit.mean_error:>+6.1f} {fit.mean_abs_error:>8.1f} {fit.exact:>6.0%} {fit.within(0.1):>5.0%} "
              f"{fit.within(0.25):>5.0%}")


if __name__ == "__main__":
    main()
