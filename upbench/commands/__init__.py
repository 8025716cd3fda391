"""Subcommands of bench.py. Each module defines HELP, add_arguments(parser) and run(args) -> int."""
from __future__ import annotations

import argparse
import sys

from . import compare, merge, network, roofline, sweep, table1

COMMANDS = {"sweep": sweep, "table1": table1, "compare": compare, "network": network, "merge": merge,
            "roofline": roofline}
DEFAULT_COMMAND = "sweep"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench.py", description="Benchmark and profile feature upsamplers.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in COMMANDS.items():
        command = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(command)
        command.set_defaults(run=module.run)
    return parser


def main(argv: list[str]) -> int:
    """``python bench.py`` alone runs the quick default sweep."""
    args = build_parser().parse_args(argv or [DEFAULT_COMMAND])
    return int(args.run(args) or 0)


def cli() -> int:
    """Console-script entry point (``upbench ...`` is ``python bench.py ...``)."""
    return main(sys.argv[1:])
