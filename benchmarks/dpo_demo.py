"""Does DPO make the demo model better at what a musician gets? Issue #24's check, in one run.

Two CLaMP-DPO iterations on `assets/demo_model.pth` with the built-in scorer against the music21
corpus dataset. The starting model and the result are each measured on a fresh sample of the same
size, the same prompts and the same seeds, none of them used by the iterations (seed block K+1, see
`pipelines/dpo/loop.py: sample_seed`): the share of pieces that end, the share usable (ended,
post-processed, bars aligned, staves grouped, no near-copy of a reference) and the mean score. It
prints a table and writes JSON to `--json`.

    python benchmarks/dpo_demo.py --json tmp/dpo-demo.json                 # one H100 / H200: about 4-6 min
    python benchmarks/dpo_demo.py --quick --json tmp/dpo-quick.json        # CPU, tiny sizes: about a minute

The GPU run's sizes (200 pieces of up to 600 patches, 50 at a time) are those of the run that found
the problem (docs/dpo.md), so the figures compare. `--data` reuses a built dataset (else the corpus
dataset is built into `--out`/data first: a few seconds to a minute). The result is the last
iteration's model (no keep-best), so a worse model shows as worse; the table also says which model
keep-best would have kept. `--quick` uses one CPU thread: on a loaded 2-core box two threads were
20x slower than one.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from pipelines.dataset.corpus import build_corpus_dataset
from pipelines.dpo.config import DPOConfig
from pipelines.dpo.loop import evaluate_model, run_dpo
from pipelines.dpo.report import SampleFigures, best_model
from pipelines.errors import DPOError
from pipelines.files import atomic_write_text
from pipelines.model.registry import default_model_path

GPU = {"samples": 200, "generation_batch": 50, "max_patches": 600, "steps": 300, "corpus_limit": None}
QUICK = {"samples": 4, "generation_batch": 4, "max_patches": 150, "steps": 3, "corpus_limit": 8}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="CPU, tiny sizes: checks the script, not the claim")
    p.add_argument("--out", type=Path, default=Path("tmp/dpo-demo"), help="run folder (pieces, scores, models)")
    p.add_argument("--json", type=Path, required=True, help="where the figures go")
    p.add_argument("--data", type=Path, help="a built dataset (prompts.txt, interleaved/); default: build the corpus")
    p.add_argument("--model", type=Path, default=None, help="default: the demo model")
    p.add_argument("--iterations", type=int, default=2)
    p.add_argument("--samples", type=int, help="pieces per iteration and per measurement")
    p.add_argument("--generation-batch", type=int)
    p.add_argument("--max-patches", type=int)
    p.add_argument("--steps", type=int, help="optimiser steps per iteration, at most")
    p.add_argument("--lr", type=float, default=1e-5, help="the demo model is small: 1e-5 (upstream's 1e-6 is "
                                                          "for NotaGen-X)")
    p.add_argument("--min-pairs", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="default: cuda, or cpu with --quick")
    return p.parse_args(argv)


def sizes(args) -> dict:
    base = QUICK if args.quick else GPU
    given = {"samples": args.samples, "generation_batch": args.generation_batch, "max_patches": args.max_patches,
             "steps": args.steps}
    return {**base, **{k: v for k, v in given.items() if v is not None}}


def dataset(args, out: Path, limit: int | None) -> Path:
    if args.data:
        return args.data
    folder = out / "data"
    if not (folder / "prompts.txt").is_file():
        started = time.perf_counter()
        report = build_corpus_dataset(folder, limit=limit)
        print(f"built the corpus dataset: {len(report.train) + len(report.eval)} pieces in "
              f"{time.perf_counter() - started:.0f} s", flush=True)
    return folder


def score_text(f: SampleFigures) -> str:
    return "-" if f.mean_score is None else f"{f.mean_score:.4f}"


def row(name: str, f: SampleFigures) -> str:
    score = score_text(f)
    return (f"{name:<28} {f.pieces:>6} {f.ended:>5} ({f.ended_share:>4.0%}) {f.usable:>5} ({f.usable_share:>4.0%}) "
            f"{score:>10}")


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.quick:
        torch.set_num_threads(1)
    device = args.device or ("cpu" if args.quick else "cuda")
    size = sizes(args)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    data = dataset(args, out, size["corpus_limit"])
    model = args.model or default_model_path()
    config = DPOConfig(model=model, data_dir=data, out_dir=out / "run", iterations=args.iterations,
                       samples=size["samples"], generation_batch=size["generation_batch"],
                       max_patches=size["max_patches"], steps=size["steps"], lr=args.lr, min_pairs=args.min_pairs,
                       score_final=False, keep_best=False, scorer="builtin", device=device, seed=args.seed)
    fresh = args.iterations + 1  # a seed block no iteration uses: the same fresh pieces for both models

    def log(record: dict):
        if record.get("text") and record.get("event") != "end":
            print(f"{time.perf_counter() - started:7.1f} s  {record['text']}", flush=True)

    print(f"{time.perf_counter() - started:7.1f} s  the starting model: writing {config.samples} fresh pieces",
          flush=True)
    start = evaluate_model(config, model, out / "measure_start", fresh, "starting model")
    print(f"{time.perf_counter() - started:7.1f} s  the starting model: {start.describe()}", flush=True)
    try:
        result = run_dpo(config, on_log=log)
    except DPOError as e:  # too few pairs at the first iteration: said, and kept with the starting figures
        print(f"DPO did not run: {e}", flush=True)
        atomic_write_text(args.json, json.dumps({"status": "failed", "message": str(e), "start": start.to_dict(),
                                                 "settings": config.to_dict()}, indent=2) + "\n")
        return 1
    print(f"{time.perf_counter() - started:7.1f} s  the result ({result.final_model}): writing {config.samples} "
          f"fresh pieces", flush=True)
    after = evaluate_model(config, result.final_model, out / "measure_result", fresh, "result")
    seconds = time.perf_counter() - started

    kept = best_model(result.measured + [after])
    card = torch.cuda.get_device_name() if device.startswith("cuda") else "CPU"
    header = f"{'':<28} {'pieces':>6} {'ended':>12} {'usable':>12} {'mean score':>10}"
    lines = [f"demo model, {args.iterations} DPO iterations, built-in scorer, {card}, torch {torch.__version__}",
             header, row("starting model (fresh)", start), row("result (fresh)", after), "",
             "during the run (each iteration's own pieces, used to pick the pairs):", header]
    lines += [row(m.label, m) for m in result.measured]
    for it in result.iterations:
        flag = "; lowered the usable share" if it.lowered_usable else ""
        lines.append(f"iteration {it.iteration}: {it.chosen} chosen, {it.rejected} rejected, {it.pairs} pairs, "
                     f"{it.optimise.steps} steps{flag}")
    if result.message:
        lines.append(result.message)
    usable_rose = after.usable_share > start.usable_share
    score_rose = (after.mean_score or 0.0) > (start.mean_score or 0.0)
    lines += [f"usable share {'rose' if usable_rose else 'did not rise'}: {start.usable_share:.1%} -> "
              f"{after.usable_share:.1%}; mean score {'rose' if score_rose else 'did not rise'}: "
              f"{score_text(start)} -> {score_text(after)}",
              f"keep-best would keep: {kept.label if kept else '-'}; status {result.status}; {seconds:.0f} s in all"]
    print("\n".join(lines), flush=True)
    record = {"command": "python benchmarks/dpo_demo.py" + (" --quick" if args.quick else ""), "card": card,
              "torch": torch.__version__, "device": device, "seconds": seconds, "status": result.status,
              "message": result.message, "settings": config.to_dict(), "fresh_seed_block": fresh,
              "start": start.to_dict(), "result": after.to_dict(), "usable_rose": usable_rose,
              "score_rose": score_rose, "during_run": [m.to_dict() for m in result.measured],
              "iterations": [it.to_dict() for it in result.iterations],
              "keep_best_would_keep": kept.label if kept else None}
    atomic_write_text(args.json, json.dumps(record, indent=2) + "\n")
    print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
