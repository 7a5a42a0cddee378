"""The `notagen` command line. Each area registers its subcommands from its own module.

The console script enters through `launch.py`, which adds the studio's own
subcommand, so nothing here imports the UI.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from pipelines.errors import NotaGenError

# Modules with `register(subparsers)`; each adds its subcommands and sets `func`.
COMMAND_MODULES = (
    "pipelines.commands.model",
    "pipelines.commands.dataset",
    "pipelines.commands.train",
    "pipelines.commands.render",
    "pipelines.commands.generate",
    "pipelines.commands.dpo",
)


def build_parser(extra_modules: tuple[str, ...] = ()) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="notagen", description="NotaGen Studio: data, training, generation.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES + tuple(extra_modules):
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None, extra_modules: tuple[str, ...] = ()) -> int:
    args = build_parser(extra_modules).parse_args(argv)
    try:
        return args.func(args) or 0
    except NotaGenError as e:
        print(f"notagen {args.command}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
