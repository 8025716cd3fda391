"""Subcommands of bench.py. Each module defines HELP, add_arguments(parser) and run(args) -> int."""
from __future__ import annotations

import argparse
import sys

from ..registry import load_plugin
from . import compare, merge, network, report, sweep, table1

COMMANDS = {"sweep": sweep, "table1": table1, "compare": compare, "network": network, "merge": merge,
            "report": report}
DEFAULT_COMMAND = "sweep"
PLUGIN_HELP = ("register the operators of a plugin: a Python file (path/to/file.py) or an importable module "
               "(package.module); repeatable, before or after the command")


def _add_plugin_option(parser: argparse.ArgumentParser, dest: str) -> None:
    # The main parser and each subcommand write different dests: a subparser's defaults would
    # otherwise overwrite the plugins given before the command.
    parser.add_argument("--plugin", action="append", dest=dest, default=[], metavar="FILE_OR_MODULE", help=PLUGIN_HELP)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench.py", description="Benchmark and profile feature upsamplers.")
    _add_plugin_option(parser, "plugins_before")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in COMMANDS.items():
        command = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(command)
        _add_plugin_option(command, "plugins_after")
        command.set_defaults(run=module.run)
    return parser


def main(argv: list[str]) -> int:
    """``python bench.py`` alone (or with only --plugin options) runs the quick default sweep."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args([*argv, DEFAULT_COMMAND])
    for plugin in [*args.plugins_before, *getattr(args, "plugins_after", [])]:
        try:
            load_plugin(plugin)
        except ValueError as error:
            print(f"bench.py: --plugin {plugin}: {error}", file=sys.stderr)
            return 2
    return int(args.run(args) or 0)


def cli() -> int:
    """Console-script entry point (``upbench ...`` is ``python bench.py ...``)."""
    return main(sys.argv[1:])
