"""How often a model's pieces are usable: post-processed, converted to MusicXML, every voice's bars aligned.

Two stages, so generation can run on a GPU machine and the check where the renderer is installed:

    python benchmarks/demo_quality.py generate --model assets/demo_model.pth --num 64 --out samples.json
    python benchmarks/demo_quality.py generate ... --bar-retries 0   # every line as drawn (upstream)
    python benchmarks/demo_quality.py check samples.json
    python benchmarks/demo_quality.py check old.json --replace new.json   # pieces of new.json replace old.json's

Pieces cycle through the model's prompt list; piece i uses seed i.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from pipelines.generation.options import DEFAULT_BAR_RETRIES


def add_engine_args(ap: argparse.ArgumentParser, model: str | None = "assets/demo_model.pth") -> None:
    """The options every script that writes a sample shares: the model, its device, batches and limits."""
    ap.add_argument("--model", default=model, required=model is None)
    ap.add_argument("--batch", type=int, default=64, help="rows per batch")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--max-seconds", type=float, default=600)
    ap.add_argument("--max-patches", type=int, default=0)
    ap.add_argument("--bar-retries", type=int, default=DEFAULT_BAR_RETRIES,
                    help="redraws of a bar line whose voices do not line up (0: as upstream)")
    ap.add_argument("--compile", action="store_true", help="compiled CUDA-graph steps (worth it for long runs)")


def load_for(args):
    """The engine `add_engine_args`' options ask for: compiled steps only when asked, the kernels and pairs as
    the engine plans them."""
    from pipelines.generation.loading import load_engine
    from pipelines.generation.plan import DecodeOptions

    return load_engine(Path(args.model), device=args.device, dtype=args.dtype,
                       decode=DecodeOptions(compile=args.compile))


def generate_in_batches(engine, requests: list, args) -> tuple[list, float]:
    """The engine's pieces for `requests`, `--batch` rows at a time under `add_engine_args`' limits, and the
    seconds they took."""
    from pipelines.generation.options import GenerationLimits

    limits = GenerationLimits(max_patches=args.max_patches, max_seconds=args.max_seconds,
                              bar_retries=args.bar_retries)
    started = time.perf_counter()
    pieces = []
    for start in range(0, len(requests), args.batch):
        pieces += engine.generate(requests[start:start + args.batch], limits=limits)
    return pieces, time.perf_counter() - started


def generate(args):
    from pipelines.abc.prompts import parse_prompt
    from pipelines.generation.engine import GenerationRequest

    engine = load_for(args)
    prompts = [parse_prompt(line) for line in engine.card.prompts]
    if not prompts:
        raise SystemExit("the model records no prompts")
    indices = args.seeds or range(args.first, args.first + args.num)
    requests = [GenerationRequest(prompts[i % len(prompts)], seed=i) for i in indices]
    pieces, seconds = generate_in_batches(engine, requests, args)
    out = [{"prompt": p.request.prompt.line, "seed": p.request.seed, "status": p.status, "reason": p.reason,
            "raw": p.raw, "abc": p.abc, "chars": p.chars, "redrawn_bars": p.redrawn_bars,
            "restarts": p.restarts} for p in pieces]
    Path(args.out).write_text(json.dumps(out), encoding="utf-8")
    chars = sum(p.chars for p in pieces)
    paths = sorted({p.decode_path for p in pieces})
    print(f"{len(pieces)} pieces, {chars} chars in {seconds:.1f} s ({chars / seconds:.0f} chars/s) on "
          f"{engine.runtime.device} {engine.runtime.dtype_name}, decoded {' | '.join(paths)}; statuses "
          f"{ {s: sum(p.status == s for p in pieces) for s in {p.status for p in pieces}} }")


def unusable_reason(status: str, abc: str | None) -> str:
    """Why a piece is not usable ("" when it is): not ended well, not convertible to MusicXML, or bars not aligned."""
    from pipelines.abc.report import report_piece
    from pipelines.errors import NotaGenError
    from pipelines.render.score import abc_to_musicxml

    if status != "ok":
        return f"generation {status}"
    try:
        report = report_piece(abc)
        abc_to_musicxml(abc)
    except NotaGenError as e:
        return f"MusicXML conversion failed: {str(e)[:60]}"
    return "" if report.aligned else "voices' bars not aligned"


def check(args):
    samples = [s for path in args.samples for s in json.loads(Path(path).read_text(encoding="utf-8"))]
    if args.replace:
        newer = {s["seed"]: s for s in json.loads(Path(args.replace).read_text(encoding="utf-8"))}
        samples = [newer.pop(s["seed"], s) for s in samples] + list(newer.values())
    usable, reasons = 0, {}
    for s in samples:
        reason = unusable_reason(s["status"], s["abc"])
        usable += not reason
        if reason:
            reasons[reason] = reasons.get(reason, 0) + 1
    print(f"usable {usable}/{len(samples)} = {100 * usable / len(samples):.0f}% "
          f"(post-processed, converted to MusicXML, bars aligned); failures: {reasons}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="stage", required=True)
    g = sub.add_parser("generate")
    add_engine_args(g, model=None)
    g.add_argument("--num", type=int, default=64)
    g.add_argument("--first", type=int, default=0, help="index of the first piece (to split a run in parts)")
    g.add_argument("--seeds", type=int, nargs="+", help="only these pieces (instead of --first/--num)")
    g.add_argument("--out", required=True)
    g.set_defaults(func=generate)
    c = sub.add_parser("check")
    c.add_argument("samples", nargs="+", help="one or more files of `generate` (parts of one run)")
    c.add_argument("--replace", help="a file of `generate --seeds` whose pieces replace those of the same seed")
    c.set_defaults(func=check)
    args = ap.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
