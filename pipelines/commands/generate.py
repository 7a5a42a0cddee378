"""`notagen generate`: write pieces from a prompt (or continue one) into a folder."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from pipelines.abc.prompts import Prompt
from pipelines.errors import NotaGenError
from pipelines.fields import add_option, values_of
from pipelines.files import atomic_write_text
from pipelines.generation.engine import GenerationRequest
from pipelines.generation.header import HeaderControls, bars_planned, bars_written, offered_choices
from pipelines.generation.loading import load_engine
from pipelines.generation.options import GenerationLimits, SamplingConfig
from pipelines.generation.plan import DecodeOptions
from pipelines.model.registry import default_model_path, validate_prompt

# Fields with a flag of the same name (--top-k sets top_k); defaults, ranges and help come from the field.
SAMPLING_OPTIONS = ("top_k", "top_p", "temperature")
LIMIT_OPTIONS = ("max_patches", "max_chars", "max_seconds", "bar_retries")
HEADER_OPTIONS = ("meter", "key", "tempo", "bars")


def register(subparsers):
    p = subparsers.add_parser("generate", help="generate pieces with a NotaGen model")
    p.add_argument("--model", help="checkpoint file; default: the studio's default model")
    p.add_argument("--period", help="needed unless --prefix says it (its header, or its MusicXML's composer)")
    p.add_argument("--composer", help='as "Last, First"; needed unless --prefix says it')
    p.add_argument("--instrumentation", help="needed unless --prefix says it (its parts)")
    p.add_argument("--num", type=int, default=1, help="pieces to write in one batch; 0: as many as fit")
    p.add_argument("--seed", type=int, default=0, help="seed of the first piece; piece i uses seed + i")
    for name in SAMPLING_OPTIONS:
        add_option(p, SamplingConfig, name)
    for name in LIMIT_OPTIONS:
        add_option(p, GenerationLimits, name)
    for name in HEADER_OPTIONS:
        add_option(p, HeaderControls, name)
    p.add_argument("--prefix", type=Path, help="a score to continue: .abc (e.g. from `notagen dataset build`), "
                   ".musicxml, .xml or .mxl")
    p.add_argument("--prefix-lines", type=int, default=0, help="tune-body lines of --prefix to keep (0: all)")
    p.add_argument("--continue-lines", type=int, default=None,
                   help="lines to add after --prefix (a target; default 8, with --from-bar the score's own rest)")
    p.add_argument("--from-bar", type=int, default=0, metavar="K",
                   help="variations of --prefix from bar K on: bars 1..K-1 kept as they are, the rest written "
                        "again (as many bars as the score has; --num variations, one seed each)")
    p.add_argument("--bar", type=int, default=0, metavar="K",
                   help="write bar K of --prefix again, every other bar kept: --candidates versions, best first by "
                        "the model's likelihood of the bars after it")
    p.add_argument("--candidates", type=int, default=4, help="versions of --bar K to draw (one seed each)")
    p.add_argument("--compile", action="store_true",
                   help="compile the decode steps (CUDA with Triton): about 20 s more at the start (6-8 s once "
                        "cached), then up to twice the speed; for long runs of many or long pieces")
    p.add_argument("--device", default="auto", help="auto, cuda, cuda:1, mps or cpu")
    p.add_argument("--dtype", default="auto", help="auto (fp16 on GPU, fp32 on CPU), fp16, bf16 or fp32")
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=run_generate)


def options_from_args(args) -> tuple[SamplingConfig, GenerationLimits, HeaderControls]:
    """The sampling, limits and header controls asked for; each refuses values out of range with its own message."""
    return (SamplingConfig(**values_of(args, SAMPLING_OPTIONS)), GenerationLimits(**values_of(args, LIMIT_OPTIONS)),
            HeaderControls(**values_of(args, HEADER_OPTIONS)))


def variation_lines(args, bars: int) -> tuple[int, int]:
    """(tune-body lines of --prefix to keep, lines to add) from --prefix-lines / --continue-lines, or from
    --from-bar K: the first K-1 bars kept, as many written again as the score has after them."""
    if not args.from_bar:
        return args.prefix_lines, 8 if args.continue_lines is None else args.continue_lines
    if args.prefix_lines:
        raise NotaGenError("--from-bar K keeps bars 1..K-1: leave out --prefix-lines")
    if not 2 <= args.from_bar <= bars:
        raise NotaGenError(f"--from-bar must be 2 to {bars} (the score has {bars} bars; bar 1 on is a new piece)")
    keep = args.from_bar - 1
    return keep, bars - keep if args.continue_lines is None else args.continue_lines


def run_generate(args) -> int:
    from pipelines.dataset.annotate import Labels
    from pipelines.generation.continuation import (
        continuation_prefix,
        judge_continuation,
        read_score,
        score_lines,
        score_prompt,
    )

    if args.num < 0:
        raise NotaGenError("--num must be 0 (as many as fit) or more")
    sampling, limits, header = options_from_args(args)  # refused values stop here, before a model loads
    if (args.from_bar or args.bar) and not args.prefix:
        raise NotaGenError(f"{'--bar' if args.bar else '--from-bar'} needs --prefix: the score to write variations of")
    if args.bar and (args.from_bar or args.prefix_lines):
        raise NotaGenError("--bar K keeps every bar but K: leave out --from-bar and --prefix-lines")
    given = Labels(args.period, args.composer, args.instrumentation)
    prefix = ""
    if args.prefix:  # so is a file that is not a score, and a meter or key that is not the piece's own
        source = read_score(args.prefix, str(args.prefix))
        prompt, taken = score_prompt(args.prefix, source, given)
        if taken:
            print(f"prompt {prompt.line} ({taken})", file=sys.stderr)
        keep, add = variation_lines(args, len(score_lines(source)[1]))
        prefix = continuation_prefix(source, prompt, keep_lines=keep, add_lines=add)
        header.check_continuation(prefix)
    else:
        missing = [f"--{name}" for name in ("period", "composer", "instrumentation") if not getattr(args, name)]
        if missing:
            raise NotaGenError(f"{', '.join(missing)}: needed for a new piece (a score to continue with --prefix "
                               "may say them)")
        prompt = Prompt(args.period, args.composer, args.instrumentation)
    model_path = Path(args.model) if args.model else default_model_path()
    engine = load_engine(model_path, device=args.device, dtype=args.dtype,
                         decode=DecodeOptions(compile=True) if args.compile else DecodeOptions())
    if args.bar:
        return write_bar_candidates(args, engine, source, prompt, sampling, limits, model_path)
    if args.num == 0:
        args.num = engine.max_pieces()
        print(f"{args.num} pieces fit in one batch on {engine.runtime.device}", file=sys.stderr)
    warning = validate_prompt(engine.card, prompt)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    unseen = "" if prefix else offered_choices(engine.card.header_choices, prompt.line).unseen(header, prompt.line)
    if unseen:
        print(f"warning: {unseen}", file=sys.stderr)
    requests = [GenerationRequest(prompt=prompt, seed=args.seed + i, prefix=prefix, header=header)
                for i in range(args.num)]

    def show(row, text):
        print(f"\rpiece {row + 1}/{args.num}: {len(text)} chars", end="", file=sys.stderr, flush=True)

    pieces = [judge_continuation(piece) for piece in engine.generate(requests, sampling, limits, on_patch=show)]
    print(file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    failures = 0
    for piece in pieces:
        stem = prompt.file_stem(piece.request.seed)
        if piece.abc is not None:
            atomic_write_text(args.out / f"{stem}.abc", piece.abc)
        atomic_write_text(args.out / f"{stem}.raw.abc", piece.raw)
        meta = {
            "prompt": prompt.line, "period": prompt.period, "composer": prompt.composer,
            "instrumentation": prompt.instrumentation, "seed": piece.request.seed,
            "parameters": {"top_k": args.top_k, "top_p": args.top_p, "temperature": args.temperature,
                           "max_patches": args.max_patches, "max_chars": args.max_chars,
                           "max_seconds": args.max_seconds, "bar_retries": args.bar_retries,
                           "meter": header.meter, "key": header.key, "tempo": header.tempo, "bars": header.bars,
                           "continued_from": str(args.prefix or ""), "from_bar": args.from_bar or None},
            "model": str(model_path), "device": str(engine.runtime.device), "dtype": engine.runtime.dtype_name,
            "status": piece.status, "reason": piece.reason, "chars": piece.chars, "patches": piece.patches,
            "redrawn_bars": piece.redrawn_bars, "restarts": piece.restarts,
            "bars_planned": bars_planned(piece.raw), "bars_written": bars_written(piece.raw),
            "seconds": round(piece.seconds, 3), "chars_per_second": round(piece.chars_per_second, 1),
            "warmup_seconds": round(piece.warmup_seconds, 3),
        }
        atomic_write_text(args.out / f"{stem}.json", json.dumps(meta, indent=2) + "\n")
        line = f"{stem}: {piece.status}" + (f" ({piece.reason})" if piece.reason else "")
        print(line, file=sys.stderr)
        failures += not piece.ok
    return 1 if failures == len(pieces) else 0


def write_bar_candidates(args, engine, source: str, prompt: Prompt, sampling: SamplingConfig,
                         limits: GenerationLimits, model_path: Path) -> int:
    """--bar K: the candidates for bar K, best first, each as a whole piece (`<stem>-bar<K>-<rank>`)."""
    from pipelines.generation.variation import rewrite_bar

    found = rewrite_bar(engine, source, prompt, args.bar, args.candidates, args.seed, sampling, limits.bar_retries)
    args.out.mkdir(parents=True, exist_ok=True)
    for rank, candidate in enumerate(found, 1):
        stem = f"{Path(args.prefix).stem}-bar{args.bar}-{rank}"
        if candidate.abc is not None:
            atomic_write_text(args.out / f"{stem}.abc", candidate.abc)
        atomic_write_text(args.out / f"{stem}.raw.abc", candidate.text)
        meta = {"prompt": prompt.line, "seed": candidate.seed, "bar": args.bar, "rank": rank,
                "following_logprob": round(candidate.following_logprob, 4), "bar_text": candidate.line,
                "model": str(model_path), "continued_from": str(args.prefix),
                "status": "ok" if candidate.abc is not None else "invalid"}
        atomic_write_text(args.out / f"{stem}.json", json.dumps(meta, indent=2) + "\n")
        print(f"{stem}: seed {candidate.seed}, the bars after it at {candidate.following_logprob:.2f} nats",
              file=sys.stderr)
    return 0
