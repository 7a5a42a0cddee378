"""`notagen dataset build | corpus | annotate`: scores to NotaGen training data."""
from __future__ import annotations

import sys
from pathlib import Path

from pipelines.dataset.config import DatasetConfig
from pipelines.errors import DatasetError
from pipelines.fields import add_option, values_of

# The converters (music21) load when a dataset command runs, not when `notagen` starts.

# DatasetConfig fields with a flag; defaults, ranges and help come from the field.
BUILD_OPTIONS = ("eval_split", "seed", "workers", "time_limit_s", "use_cache", "max_unaligned_share")
FLAGS = {"time_limit_s": "--time-limit", "use_cache": "--cache"}  # the others: --field-name


def register(subparsers):
    p = subparsers.add_parser("dataset", help="build, label and inspect training datasets")
    verbs = p.add_subparsers(dest="verb", required=True)

    b = verbs.add_parser("build", help="convert score files / folders into a training dataset")
    b.add_argument("sources", nargs="+", type=Path, metavar="SRC",
                   help="score files or folders (.xml .musicxml .mxl; .krn .mei .abc .mid through music21, lossy)")
    _add_build_options(b)
    _add_label_options(b)
    b.add_argument("--labels", type=Path, metavar="FILE.csv",
                   help="per-piece labels: columns file (or piece), period, composer, instrumentation")
    b.set_defaults(func=run_build)

    c = verbs.add_parser("corpus", help="build the labelled dataset from music21's bundled corpus (offline)")
    _add_build_options(c)
    c.add_argument("--limit", type=int, help="only the first N pieces (Bach chorales come first)")
    c.set_defaults(func=run_corpus)

    a = verbs.add_parser("annotate", help="show or change pieces' period / composer / instrumentation")
    a.add_argument("dataset", type=Path, metavar="DIR", help="a built dataset folder")
    _add_label_options(a)
    a.add_argument("--labels", type=Path, metavar="FILE.csv", help="per-piece labels, as for build")
    a.add_argument("--piece", action="append", default=[], metavar="NAME",
                   help="apply --period/--composer/--instrumentation to this piece only (repeatable)")
    a.set_defaults(func=run_annotate)


def _add_build_options(p):
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="dataset folder to write")
    for name in BUILD_OPTIONS:
        add_option(p, DatasetConfig, name, FLAGS.get(name))


def _add_label_options(p):
    p.add_argument("--period", help='e.g. "Romantic"')
    p.add_argument("--composer", help='"Last, First", e.g. "Chopin, Frederic"')
    p.add_argument("--instrumentation", help='e.g. "Keyboard", "Chamber", "Choral", "Art Song"')


def config_from_args(args, **extra) -> DatasetConfig:
    """The build's settings; DatasetConfig refuses values out of range with its own message."""
    return DatasetConfig(**values_of(args, BUILD_OPTIONS), **extra)


class _Progress:
    """One updating terminal line: done/total and a bar."""

    def __init__(self, what: str):
        self.what = what

    def __call__(self, done: int, total: int) -> None:
        width = 30
        filled = width * done // max(total, 1)
        end = "\n" if done >= total else ""
        print(f"\r{self.what} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}", end=end,
              file=sys.stderr, flush=True)


def _print_report(report) -> int:
    for f in report.failed:
        print(f"  failed {f.source}: {f.stage}: {f.reason}", file=sys.stderr)
    for f in report.files:
        if f.status == "excluded":
            print(f"  left out {f.source}: {f.reason}", file=sys.stderr)
    lossy = [f for f in report.files if f.lossy and f.indexed]
    if lossy:
        print(f"  {len(lossy)} file(s) converted through music21 (lossy: spelling, voices or layout may differ)",
              file=sys.stderr)
    print(report.summary())
    print(f"  report: {report.out_dir / 'report.json'}; annotations: notagen dataset annotate {report.out_dir}")
    return 1 if report.cancelled or not (report.train or report.eval) else 0


def run_build(args) -> int:
    from pipelines.dataset import Labels, build_dataset, read_labels_csv

    if args.labels and (args.period or args.composer or args.instrumentation):
        raise DatasetError("give either --labels or --period/--composer/--instrumentation, not both")
    config = config_from_args(args, labels=Labels(args.period, args.composer, args.instrumentation),
                              piece_labels=read_labels_csv(args.labels) if args.labels else {})
    return _print_report(build_dataset(args.sources, args.out, config, on_progress=_Progress("converting")))


def run_corpus(args) -> int:
    from pipelines.dataset import build_corpus_dataset

    report = build_corpus_dataset(args.out, limit=args.limit, config=config_from_args(args),
                                  on_progress=_Progress("converting"))
    return _print_report(report)


def run_annotate(args) -> int:
    from pipelines.dataset import Labels, load_manifest, read_labels_csv, reannotate

    given = Labels(args.period, args.composer, args.instrumentation)
    if args.labels:
        if args.period or args.composer or args.instrumentation or args.piece:
            raise DatasetError("give either --labels or --period/--composer/--instrumentation [--piece], not both")
        manifest = reannotate(args.dataset, read_labels_csv(args.labels))
    elif args.period or args.composer or args.instrumentation:
        manifest = reannotate(args.dataset, {p: given for p in args.piece} if args.piece else given)
    elif args.piece:
        raise DatasetError("--piece needs --period, --composer or --instrumentation")
    else:
        manifest = load_manifest(args.dataset)
    for piece, entry in manifest["pieces"].items():
        print(f"{piece}: {entry['period']} / {entry['composer']} / {entry['instrumentation']}  [{entry['split']}]")
        for warning in entry["warnings"]:
            print(f"    warning: {warning}")
    return 0
