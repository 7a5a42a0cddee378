"""Entry point: `python launch.py [options]` starts the studio; the `notagen` command enters at `cli`."""
from __future__ import annotations

import sys

from pipelines.cli import main as pipelines_main

STUDIO_COMMANDS = ("studio.commands",)


def cli(argv: list[str] | None = None) -> int:
    """`notagen <subcommand> ...`: the pipelines' subcommands plus `studio`."""
    return pipelines_main(argv, extra_modules=STUDIO_COMMANDS)


if __name__ == "__main__":
    sys.exit(cli(["studio", *sys.argv[1:]]))
