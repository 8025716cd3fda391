"""Subcommands of bench.py. Each module defines HELP, add_arguments(parser) and run(args) -> int."""
from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import signal
import sys
import threading
import warnings
from pathlib import Path
from typing import Any, Iterator, NoReturn, Sequence

from ..cli_args import file_name, output_format
from ..environment import upbench_version
from ..registry import PluginWarning, load_plugin
from . import compare, diff, merge, network, report, roofline, selfcheck, sweep, table1

COMMANDS = {"sweep": sweep, "table1": table1, "compare": compare, "network": network, "merge": merge,
            "report": report, "diff": diff, "roofline": roofline, "selfcheck": selfcheck}
DEFAULT_COMMAND = "sweep"
PLUGIN_HELP = ("register the operators of a plugin: a Python file (path/to/file.py) or an importable module "
               "(package.module); repeatable, before or after the command")


def _add_plugin_option(parser: argparse.ArgumentParser, dest: str) -> None:
    # The main parser and each subcommand write different dests: a subparser's defaults would
    # otherwise overwrite the plugins given before the command.
    parser.add_argument("--plugin", type=file_name, action="append", dest=dest, default=[], metavar="FILE_OR_MODULE",
                        help=PLUGIN_HELP)


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr and exit 2, without the usage block
    (``--help`` is unchanged). ``commands`` maps each subcommand to its parser."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commands: dict[str, Parser] = {}

    def error(self, message: str) -> NoReturn:
        message = " ".join(line.strip() for line in message.splitlines())
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")

    def parse_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                   namespace: argparse.Namespace | None = None) -> argparse.Namespace:
        # Arguments a subcommand does not know come back here; name the subcommand, not the program.
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            command = self.commands.get(getattr(parsed, "command", None) or "", self)
            command.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed


def build_parser(prog: str = "bench.py") -> Parser:
    parser = Parser(prog=prog, description="Benchmark and profile feature upsamplers.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {upbench_version()}")
    _add_plugin_option(parser, "plugins_before")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name, module in COMMANDS.items():
        command = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(command)
        _add_plugin_option(command, "plugins_after")
        command.set_defaults(run=module.run)
        parser.commands[name] = command
    return parser


def resume_command(prog: str, argv: list[str], out: Path) -> str:
    """The command line that continues an interrupted sweep: the same flags, ``--out`` the log, ``--resume``."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--out":
            skip = True
        elif arg != "--resume" and not arg.startswith("--out="):
            kept.append(arg)
    # the script as it was run (python ../upbench/bench.py from elsewhere), so the line runs as printed
    script = sys.argv[0] if sys.argv and Path(sys.argv[0]).name == prog else prog
    launcher = ["upbench"] if prog == "upbench" else [Path(sys.executable).name, script]
    return shlex.join([*launcher, *kept, "--out", str(out), "--resume"])


def _silence_stdout() -> None:
    """After the reader of stdout went away (``| head``), point it at /dev/null so the flush at exit is quiet."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


class Terminated(KeyboardInterrupt):
    """SIGTERM (a batch system's kill, ``kill PID``), handled as Ctrl-C is: workers stopped, the resume
    command printed."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated()


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


TOP_LEVEL_OPTIONS = ("--plugin", "--version", "--help", "-h")


def _names(option: str, known: tuple[str, ...]) -> bool:
    """Whether ``option`` is one of ``known``, or a prefix argparse takes for one (--plug, --ver)."""
    name = option.partition("=")[0]
    return name in known or (name.startswith("--") and len(name) > 2 and any(k.startswith(name) for k in known))


def _names_a_command(args: list[str], options: argparse.ArgumentParser) -> bool:
    """Whether ``args``, the default command's options as given, hold a command's name as a word of its own: one
    that no option before it takes as its value (``--out report`` names a file, not the report command)."""
    # argparse keeps its actions private; which option takes a value is only there
    takes_value = {string: action.nargs != 0 for action in options._actions for string in action.option_strings}
    expecting_value = False
    for token in args:
        if expecting_value:
            expecting_value = False
        elif token.startswith("-"):
            name = token.partition("=")[0]
            known = [name] if name in takes_value else [string for string in takes_value if string.startswith(name)]
            expecting_value = "=" not in token and len(known) == 1 and takes_value[known[0]]
        elif token in COMMANDS:
            return True
    return False


def with_default_command(argv: list[str], default: argparse.ArgumentParser) -> list[str]:
    """``argv`` with the default command put before the first option that is not the top level's (--plugin,
    --version, --help): ``python bench.py --device cpu`` is the default sweep on the CPU. ``default``: that
    command's parser. Where a command is named after options (``--device cpu table1``), nothing is put: the
    parser says what is wrong."""
    position = 0
    while position < len(argv) and _names(argv[position], ("--plugin",)):
        position += 1 if "=" in argv[position] else 2
    rest = argv[position:]
    if rest and rest[0].startswith("-") and not _names(rest[0], TOP_LEVEL_OPTIONS) \
            and not _names_a_command(rest, default):
        return [*argv[:position], DEFAULT_COMMAND, *rest]
    return argv


def main(argv: list[str], prog: str = "bench.py") -> int:
    """``python bench.py`` alone (or with only --plugin options, or with the sweep's options) runs the quick default
    sweep. Every failure is one line on stderr and a non-zero exit: 2 for a usage or file error, 130 for Ctrl-C
    and 143 for SIGTERM (with the command that resumes), 141 for a closed stdout pipe (silently)."""
    parser = build_parser(prog)
    argv = with_default_command(list(argv), parser.commands[DEFAULT_COMMAND])
    args = parser.parse_args(argv)
    if args.command is None:
        argv.append(DEFAULT_COMMAND)
        args = parser.parse_args(argv)
    try:
        with _sigterm_as_interrupt():  # from the plugins on: a slow plugin's import is Ctrl-C'd as a command is
            for plugin in [*args.plugins_before, *getattr(args, "plugins_after", [])]:
                try:
                    with warnings.catch_warnings(record=True) as warned:
                        warnings.simplefilter("always", PluginWarning)
                        load_plugin(plugin)
                except ValueError as error:
                    print(f"{prog}: --plugin {plugin}: {error}", file=sys.stderr)
                    return 2
                for warning in warned:  # upbench's own in one line each, as every message of the command line is
                    if issubclass(warning.category, PluginWarning):
                        print(f"{prog}: warning: {warning.message}", file=sys.stderr)
                    else:  # the plugin's imports' own, as Python would have shown them
                        warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)
            if hasattr(args, "format_choices"):  # add_format_argument's --format, with --out's suffix
                args.format = output_format(args.format, args.out, args.format_choices)
            return int(args.run(args) or 0)
    except KeyboardInterrupt as interrupt:
        how = "terminated" if isinstance(interrupt, Terminated) else "interrupted"
        log = getattr(args, "row_log", None)  # set by the commands that log rows, once they know the file
        if log is None:
            print(f"{args.command}: {how}", file=sys.stderr)
        elif args.command in ("sweep", "compare"):
            print(f"{args.command}: {how}; finished rows are in {getattr(args, 'rows_in', log)}; resume with: "
                  f"{resume_command(prog, argv, log)}", file=sys.stderr)
        else:
            print(f"{args.command}: {how}; finished rows are in {log}", file=sys.stderr)
        return 128 + (signal.SIGTERM if isinstance(interrupt, Terminated) else signal.SIGINT)
    except BrokenPipeError:
        _silence_stdout()
        return 141
    except (ValueError, OSError) as error:
        print(f"{args.command}: {error}", file=sys.stderr)
        return 2


def cli() -> int:
    """Console-script entry point (``upbench ...`` is ``python bench.py ...``)."""
    return main(sys.argv[1:], prog="upbench")
