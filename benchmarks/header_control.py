"""Whether a chosen meter and key cost usable pieces: the same seeds with and without `--meter 3/4 --key G`.

    python benchmarks/header_control.py                      # the demo model, 32 pieces each way, on the GPU
    python benchmarks/header_control.py --quick              # 3 short pieces each way on the CPU (a smoke check)
    python benchmarks/header_control.py --model CKPT --meter 6/8 --key Dmin --num 64 --out samples.json

Piece i uses prompt i mod 3 of Bach (Baroque, Choral), Mozart (Classical, Chamber) and Chopin (Romantic,
Keyboard), and seed i, once with the controls and once without, all in one batch (`--batch` rows at a
time); the pieces are the engine's (redraws on, as the studio runs it). Prints, per prompt and in all:
how many controlled pieces have the chosen `M:` and `K:` in their header, and the share of usable pieces
(post-processed, converted to MusicXML, every bar aligned: `demo_quality.unusable_reason`) each way. The
issue's bar: every header right, and usable within 10 points of the pieces without controls.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from demo_quality import add_engine_args, generate_in_batches, load_for, unusable_reason

from pipelines.abc.prompts import Prompt
from pipelines.generation.header import HeaderControls, header_fields

PROMPTS = (Prompt("Baroque", "Bach, Johann Sebastian", "Choral"),
           Prompt("Classical", "Mozart, Wolfgang Amadeus", "Chamber"),
           Prompt("Romantic", "Chopin, Frederic", "Keyboard"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_engine_args(ap)
    ap.add_argument("--meter", default="3/4")
    ap.add_argument("--key", default="G")
    ap.add_argument("--num", type=int, default=32, help="pieces each way (with and without the controls)")
    ap.add_argument("--quick", action="store_true", help="3 pieces each way, at most 40 patches, on the CPU")
    ap.add_argument("--out", help="write every piece (raw, post-processed, status) to this JSON file")
    args = ap.parse_args()
    if args.quick:
        args.num, args.max_patches, args.device = 3, 40, "cpu"

    from pipelines.generation.engine import GenerationRequest

    controls = HeaderControls(meter=args.meter, key=args.key)
    engine = load_for(args)
    known = set(engine.card.prompts)
    missing = [p.line for p in PROMPTS if known and p.line not in known]
    if missing:
        raise SystemExit(f"{args.model} does not know the prompt(s) {missing}")
    requests = [GenerationRequest(PROMPTS[i % len(PROMPTS)], seed=i, header=header)
                for header in (HeaderControls(), controls) for i in range(args.num)]
    pieces, seconds = generate_in_batches(engine, requests, args)
    print(f"{args.model}: {2 * args.num} pieces in {seconds:.0f} s on {engine.runtime.device} "
          f"{engine.runtime.dtype_name}, {pieces[0].decode_path}; controls M:{controls.meter} K:{controls.key}")

    rows = []
    for piece in pieces:
        fields = header_fields(piece.raw)
        rows.append({"prompt": piece.request.prompt.line, "seed": piece.request.seed,
                     "controlled": piece.request.header.chosen, "status": piece.status, "reason": piece.reason,
                     "header_ok": fields.get("M") == controls.meter and fields.get("K") == controls.key,
                     "usable_reason": unusable_reason(piece.status, piece.abc), "raw": piece.raw, "abc": piece.abc})
    if args.out:
        Path(args.out).write_text(json.dumps(rows), encoding="utf-8")

    print(f"{'prompt':<45} {'headers M/K right':>18} {'usable, controlled':>19} {'usable, free':>13} {'points':>7}")
    for line in [p.line for p in PROMPTS] + ["all"]:
        mine = [r for r in rows if line in ("all", r["prompt"])]
        ruled, free = [r for r in mine if r["controlled"]], [r for r in mine if not r["controlled"]]
        if not ruled:
            continue
        right = sum(r["header_ok"] for r in ruled)
        usable = [sum(not r["usable_reason"] for r in group) / len(group) for group in (ruled, free)]
        print(f"{line:<45} {right:>10}/{len(ruled):<7} {usable[0]:>18.0%} {usable[1]:>13.0%} "
              f"{100 * (usable[0] - usable[1]):>+7.0f}")
    reasons = {}
    for r in rows:
        if r["usable_reason"]:
            key = ("controlled" if r["controlled"] else "free", r["usable_reason"])
            reasons[key] = reasons.get(key, 0) + 1
    for (way, reason), n in sorted(reasons.items()):
        print(f"  not usable ({way}): {n} x {reason}")
    wrong = [f"{r['prompt']} seed {r['seed']}" for r in rows if r["controlled"] and not r["header_ok"]]
    if wrong:
        print(f"headers without M:{controls.meter} and K:{controls.key}: {', '.join(wrong)}")


if __name__ == "__main__":
    main()
