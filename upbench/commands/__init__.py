"""Subcommands of bench.py. Each module defines HELP, add_arguments(parser) and run(args) -> int."""
from __future__ import annotations

import argparse
import importlib
from types import ModuleType

COMMANDS = ("sweep", "table1", "compare", "network", "merge")
DEFAULT_COMMAND = "sweep"


def _load(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as error:
        if error.name == f"{__name__}.{name}":
            return None
        raise


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench.py", description="Benchmark and profile feature upsamplers.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = _load(name)
        if module is None:
            continue
        command = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(command)
        command.set_defaults(run=module.run)
    return parser


def main(argv: list[str]) -> int:
    parser = build_parser()
    if not argv:
        argv = [DEFAULT_COMMAND if _load(DEFAULT_COMMAND) else "table1"]
    args = parser.parse_args(argv)
    return int(args.run(args) or 0)


def cli() -> int:
    """Console-script entry point (``upbench ...`` is ``python bench.py ...``)."""
    import sys

    return main(sys.argv[1:])
