"""bench.py sweep: measure FLOPs, params, latency and peak memory over a grid of configs.

With no arguments (``python bench.py``) it runs the quick default sweep: every registered operator
at its default knobs, C=64, sizes 16, 32, 64, N=1, fp32, fwd, on the best device present, and
writes ``results/<device>/<timestamp>.{csv,md,json,png}``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Iterable

from ..cli_args import Once, non_negative_int, positive_float, positive_int, spec_path, str_list
from ..export import check_formats, check_output_paths, write_outputs
from ..launch import CLUSTERS, Launched, Resources, launch_sweep, shard_folder, shard_logs
from ..rowlog import log_path
from ..spec import SweepSpec, read_spec_file
from ..sweep import parse_shard, run_sweep
from ..views import PIVOT_TITLES, latency_pivot, markdown_pivot, pivot
from ..vocabulary import MIB
from .measuring import (AXIS_FLAGS, DEFAULT, add_axis_arguments, add_isolation_arguments, add_resume_arguments,
                        default_out, failed_rows, note_a_fresh_resume, resume_settings, spec_mapping, summary,
                        warn_once_on_suspect_timing)

HELP = "measure FLOPs, params, latency and peak memory over operators x C x K x d x size x batch x dtype x device x mode"


def _listed(values: Iterable[object]) -> str:
    return ",".join(map(str, values))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--spec", type=spec_path, action=Once,
                        help="a YAML or TOML sweep file; flags given here override it")
    add_axis_arguments(parser, f"default: all operators, C={_listed(DEFAULT.channels)}, "
                               f"size {_listed(h if h == w else f'{h}x{w}' for h, w in DEFAULT.sizes)}, "
                               f"N={_listed(DEFAULT.batches)}, {_listed(DEFAULT.dtypes)}, "
                               f"mode {_listed(DEFAULT.modes)}, "
                               f"impl {_listed(DEFAULT.impls)}, device {_listed(DEFAULT.devices)}, "
                               f"min-run-time {DEFAULT.min_run_time:g} s")
    parser.add_argument("--mode", type=str_list, help="fwd, fwd+bwd (comma list)")
    parser.add_argument("--impl", type=str_list, help="auto, reference, compiled (comma list)")
    add_resume_arguments(parser)
    parser.add_argument("--shard", type=str,
                        help="i/n, counted from 0: measure only configs i, i+n, ... (0 <= i < n; the shards of a "
                             "4-way split are 0/4, 1/4, 2/4, 3/4)")
    add_isolation_arguments(parser)
    launch = parser.add_argument_group("launching shards as jobs (submitit)")
    launch.add_argument("--launcher", choices=("submitit",), help="run --shards jobs and merge their logs into --out")
    launch.add_argument("--shards", type=positive_int, help="how many jobs share the sweep")
    launch.add_argument("--cluster", choices=CLUSTERS, default=None,
                        help="slurm, local (processes on this machine), auto (slurm where present; default)")
    launch.add_argument("--partition", help="Slurm partition")
    launch.add_argument("--gpus-per-shard", type=non_negative_int, dest="gpus_per_shard", metavar="G",
                        help="GPUs per job (default: 1 when the sweep measures on CUDA, else 0)")
    launch.add_argument("--cpus-per-shard", type=positive_int, dest="cpus_per_shard", metavar="C", help="CPU cores per job")
    launch.add_argument("--mem-gb", type=positive_float, dest="mem_gb", help="memory per job")
    launch.add_argument("--timeout", type=positive_int, dest="timeout_min", metavar="MIN",
                        help="minutes per job (Slurm requeues a job that runs out; it resumes from its log)")
    launch.add_argument("--slurm-param", type=slurm_pair, action="append", default=[], metavar="KEY=VALUE",
                        help="any other submitit Slurm parameter, e.g. qos=high, account=lab (repeatable)")


def slurm_pair(text: str) -> tuple[str, str]:
    """'qos=high' -> ('slurm_qos', 'high')."""
    key, equals, value = text.partition("=")
    if not equals or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return f"slurm_{key.strip()}", value.strip()


def spec_file_and_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The sweep file's mapping with the flags laid over it, unvalidated."""
    mapping: dict[str, Any] = {}
    if args.spec is not None:
        mapping = read_spec_file(args.spec)
        try:  # so a bad file is named as such, also for a bad value (size: [-4]) and not only an unknown key
            SweepSpec.from_mapping(mapping, source=str(args.spec))
        except ValueError as error:
            raise ValueError(str(error) if str(args.spec) in str(error) else f"{args.spec}: {error}") from None
    mapping.update(spec_mapping(args, AXIS_FLAGS))
    return mapping


def spec_from_args(args: argparse.Namespace) -> SweepSpec:
    return SweepSpec.from_mapping(spec_file_and_flags(args), source="the command line")


# The flags of a launch's jobs by their dests (each None or empty unless given), as typed.
LAUNCH_FLAGS = {"cluster": "--cluster", "partition": "--partition", "gpus_per_shard": "--gpus-per-shard",
                "cpus_per_shard": "--cpus-per-shard", "mem_gb": "--mem-gb", "timeout_min": "--timeout",
                "slurm_param": "--slurm-param"}


def launch_flags_given(args: argparse.Namespace) -> list[str]:
    return [flag for dest, flag in LAUNCH_FLAGS.items() if getattr(args, dest) not in (None, [])]


def launch(args: argparse.Namespace, out: Path) -> Launched:
    """The sweep as ``--shards`` submitit jobs; each job resolves the spec (devices) where it runs."""
    if args.shard:
        raise ValueError("--shard is for one process; with --launcher, --shards N makes the shards")
    if args.shards is None:
        raise ValueError("--launcher submitit needs --shards N")
    resources = Resources(cluster=args.cluster or "auto", partition=args.partition, gpus=args.gpus_per_shard,
                          cpus=args.cpus_per_shard, mem_gb=args.mem_gb, timeout_min=args.timeout_min,
                          extra=dict(args.slurm_param))
    note_a_fresh_resume("sweep", args, out, shard_logs(out, args.shards))
    return launch_sweep(spec_file_and_flags(args), out, args.shards, resources, resume=args.resume,
                        isolate=args.isolate, row_timeout=args.row_timeout, allow_mixed=args.allow_mixed,
                        retry=tuple(args.retry),
                        progress=False if args.quiet else None)


def run(args: argparse.Namespace) -> int:
    problems: list[str] = []
    try:
        formats = check_formats(args.formats)
        spec = spec_from_args(args)
        shard = parse_shard(args.shard) if args.shard else None
        retry = resume_settings(args)
        if args.launcher is None and args.shards is not None:
            raise ValueError("--shards needs --launcher submitit (or use --shard i/n in each process)")
        if args.launcher is None and (given := launch_flags_given(args)):
            raise ValueError(f"{', '.join(given)}: what each job of a launch asks for; expected with --launcher "
                             f"submitit --shards N (without them the sweep runs here, and would ignore it)")
        for op in spec.ops_without_impl():  # the sweep goes on with the others, as asked
            print(f"sweep: warning: {op} has no compiled path (Upsampler.compiled_ops), so no row with --impl "
                  f"{','.join(spec.impls)}", file=sys.stderr)
        out = log_path(args.out) if args.out else default_out(spec, shard)
        check_output_paths(out, formats, args.out, appends=True)
        args.row_log = out  # for the one-line message on Ctrl-C, with the command that resumes
        if args.launcher:
            args.rows_in = shard_folder(out)  # until the jobs end and their logs are merged into out
            launched = launch(args, out)
            rows, problems = launched.rows, launched.problems
        else:
            measured: list[dict[str, Any]] = []
            warn = warn_once_on_suspect_timing("sweep")

            def on_row(row: dict[str, Any]) -> None:
                measured.append(row)
                warn(row)

            note_a_fresh_resume("sweep", args, out)
            rows = run_sweep(spec, out, resume=args.resume, shard=shard, progress=False if args.quiet else None,
                             on_row=on_row, isolate=args.isolate, row_timeout=args.row_timeout,
                             allow_mixed=args.allow_mixed, retry=retry)
            if shard is not None and rows.empty:
                print(f"sweep: shard {args.shard} holds none of the sweep's {len(spec.expand())} config(s): shard "
                      f"i/n measures configs i, i+n, ...", file=sys.stderr)
            if args.resume:  # a config's rows are one per round
                what = "config(s)" if spec.rounds == 1 else f"measurement(s) (configs x {spec.rounds} rounds)"
                print(f"sweep: resumed {out}: {len(rows) * spec.rounds - len(measured)} {what} were logged already, "
                      f"{len(measured)} measured now", file=sys.stderr)
        written = [out, *write_outputs(rows, out, formats)]
    except RuntimeError as error:  # no shard wrote a row, or an isolated worker could not start
        print(f"sweep: {error}", file=sys.stderr)
        return 1
    if not args.quiet:
        print(f"## {PIVOT_TITLES['latency']}\n")
        latency_table, suspect_cells = latency_pivot(rows)
        print(markdown_pivot(latency_table, rows, suspect_cells))
        print(f"\n## {PIVOT_TITLES['memory']}\n")
        print(markdown_pivot(pivot(rows, "peak_mem_bytes", 1 / MIB), rows) + "\n")
    print(summary(rows, written), file=sys.stderr)
    problems += failed_rows(rows, "rerun with --resume --retry failed once fixed")
    for problem in problems:
        print(f"sweep: {problem}", file=sys.stderr)
    return 1 if problems else 0
