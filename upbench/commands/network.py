"""bench.py network: what swapping the upsampler costs in a real decoder (the SAPA paper's Tables 2 and 3)."""
from __future__ import annotations

import argparse
import sys

import pandas as pd

from ..cli_args import (TABLE_FORMATS, add_format_argument, check_out, emit, file_name, image_size, knob_pair,
                        name_list, positive_int, render_table)
from ..latex import booktabs, decimals_for
from ..rules import counted_as_zero_note
from ..network import REPORT_DECIMALS, network_report
from ..presets import PRESETS, Preset, get_preset
from ..spec import IMPLS
from ..views import SUSPECT_NOTE

HELP = "network-level cost: added MACs and params of each operator in a preset decoder's upsampling stages"

FOOTNOTES = (
    "Added = the operator's count minus the baseline's, summed over the stages; MACs in G (1e9) (the paper's "
    "\"FLOPs\" column counts MACs), params in M (1e6).",
    "table1_* = the operator's Table 1 formula summed over the same stages. Where a row has no note, the traced "
    "count and Table 1's formula agree at the paper's two decimals, so a paper cell differing from both is the "
    "paper's own rounding.",
    "The paper's \"Params\" for the baseline rows is the whole model, which the upsampling stages alone "
    "do not determine.",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", required=True, choices=list(PRESETS), help="decoder preset")
    parser.add_argument("--size", type=image_size, default=None,
                        help="input image size H,W or HxW (default: the preset's); padded as the model pads it")
    parser.add_argument("--channels", type=positive_int, default=None, help="decoder width C (default: the preset's)")
    parser.add_argument("--ops", type=name_list, default=None, help="operators (comma list); default: all")
    parser.add_argument("--batch", type=positive_int, default=1, help="images per batch, default 1")
    parser.add_argument("--knob", type=knob_pair, action="append", default=[], metavar="NAME=V",
                        help="a knob's value for the operators that have it, e.g. K=7 (repeatable; one value each: "
                             "default: each operator's own)")
    parser.add_argument("--measure", action="store_true",
                        help="also time all upsampling stages back to back and take their peak memory")
    parser.add_argument("--device", default=None, help="device for --measure, e.g. cpu or cuda (default cpu)")
    parser.add_argument("--impl", choices=IMPLS, default=None,
                        help="implementation for --measure (counts do not depend on it)")
    add_format_argument(parser, TABLE_FORMATS)
    parser.add_argument("--out", type=file_name, default=None, help="write the report to this file instead of stdout")


def describe(preset: Preset, size: tuple[int, int] | None, channels: int | None, batch: int = 1) -> str:
    """The preset and the stage shapes the report was computed at: its first line the caption, which says where
    the input or the batch is not the preset's (its description names the preset's input size)."""
    shapes = preset.shapes(size, channels)
    H, W = preset.size if size is None else size
    stage_sizes = ", ".join(f"{s.H}x{s.W} (1/{s.input_stride})" for s in shapes)
    pixels = sum(s.pixels for s in shapes)
    here = [*([f"input {H}x{W}"] if (H, W) != preset.size else []), *([f"batch {batch}"] if batch != 1 else [])]
    per_batch = f"; MACs for the batch of {batch}" if batch != 1 else ""
    return (
        f"{preset.name}: {preset.description}{'; here at ' + ', '.join(here) if here else ''}\n\n"
        f"input {H}x{W} (padded to a multiple of {preset.size_divisor}), batch {batch}, C={shapes[0].channels}, "
        f"baseline {preset.baseline}; {len(shapes)} x2 stages at input {stage_sizes} ({pixels:,} pixels per image)"
        f"{per_batch}"
    )


# The LaTeX report: one operator per row, as in the SAPA paper's Tables 2 and 3; notes go under the table.
LATEX_COLUMNS = {"operator": ("Operator", "text"), "added_gmacs_paper": ("Added MACs", "G"),
                 "added_params_m": ("Added params", "M"), "latency_ms": ("Latency", "ms"), "peak_mib": ("Memory", "mib")}


IMPL_WORDS = {"auto": "each operator's compiled path where it has one and it built, else its reference (impl auto)",
              "compiled": "compiled path", "reference": "reference path"}


def measured_note(table: pd.DataFrame, preset: Preset, batch: int, impl: str) -> str:
    """How the latency and memory columns were measured, and that they are whole, not added over the baseline."""
    devices = ", ".join(sorted(table["device"].dropna().astype(str).unique())) or "no device"
    threads = ", ".join(sorted({str(int(t)) for t in table["threads"].dropna()}))
    cpu = f", {threads} CPU thread(s)" if devices.startswith("cpu") and threads else ""
    stages = ("an operator's one upsampling stage" if len(preset.stages) == 1 else
              f"all {len(preset.stages)} upsampling stages of an operator run back to back")
    return (f"Latency (median) and Memory (peak, above the inputs and weights): {stages}, whole (not added over the "
            f"baseline), in eval mode under no_grad, batch {batch}, float32, {IMPL_WORDS.get(impl, impl)}, on "
            f"{devices}{cpu}.")


def render_latex(table: pd.DataFrame, header: str, measured: str = "") -> str:
    columns = {name: label for name, (label, _) in LATEX_COLUMNS.items() if name in table.columns}
    latex_table = table[list(columns)].rename(columns=columns)
    knobs = table["knobs"].fillna("") if "knobs" in table else [""] * len(table)  # a report of an earlier upbench
    latex_table["Operator"] = [f"{operator} ({said})" if said else operator  # sapa-b (K=7): as measured
                               for operator, said in zip(table["operator"], knobs)]
    marked = set()
    if "timing_suspect" in table:  # as the sweep's tables: a latency that cannot be trusted carries the mark
        marked = {(position, "Latency") for position, doubt in enumerate(table["timing_suspect"].fillna("")) if doubt}
    notes = []
    for operator, note, zero_ops in zip(table["operator"], table["note"].fillna(""), table["zero_ops_paper"].fillna("")):
        said = "; ".join(filter(None, [note, counted_as_zero_note(str(zero_ops).split())]))
        if said:
            notes.append(f"{operator}: {said}")
    setup = [f"{line}." for line in header.split("\n\n", 1)[1:]]  # the caption holds the preset's name
    policy = ("Added MACs under the paper counting policy (fvcore's are the added_gmacs_fvcore column of "
              "--format csv).")
    return booktabs(latex_table.astype(object), {label: kind for label, kind in LATEX_COLUMNS.values()},
                    caption=header.splitlines()[0],
                    notes=[*setup, FOOTNOTES[0], policy, *filter(None, [measured]),
                           *([SUSPECT_NOTE] if marked else []), *notes],
                    marked=marked)


def markdown_float_formats(table: pd.DataFrame) -> list[str]:
    """Each column's format: the paper's two decimals, more where the column's smallest non-zero value would
    otherwise print as zero (520 added params are 0.00052 M, not 0.00), as the LaTeX widens a column."""
    return [f".{decimals_for(table[column].tolist(), REPORT_DECIMALS, most=None)}f"
            if pd.api.types.is_float_dtype(table[column]) else "g" for column in table.columns]


def render(table: pd.DataFrame, fmt: str, header: str, measured: str = "") -> str:
    if fmt == "latex":
        return render_latex(table, header, measured)
    body = render_table(table, fmt, floatfmt=markdown_float_formats(table))
    if fmt != "markdown":
        return body
    notes = "\n".join(f"- {line}" for line in [*FOOTNOTES, *filter(None, [measured])])
    return f"{header}\n\n{body}\n\n{notes}"


def say(message: str) -> None:
    print(f"network: {message}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    check_out(args.out)
    unused = [f"--{name}" for name in ("device", "impl") if getattr(args, name) is not None]
    if unused and not args.measure:  # counts depend on neither: the flag would be ignored
        raise ValueError(f"{', '.join(unused)}: what --measure runs on; expected with --measure (counts depend on "
                         f"neither)")
    preset = get_preset(args.preset)
    header = describe(preset, args.size, args.channels, args.batch)
    impl = args.impl or "auto"
    knobs: dict[str, int] = {}
    for name, values in args.knob:
        if not values:
            raise ValueError(f"--knob {name}: has no value; expected one, e.g. --knob {name}=3")
        if len(values) != 1 or name in knobs:
            raise ValueError(f"--knob {name}: one value for the whole report, got "
                             f"{', '.join(map(str, [*([knobs[name]] if name in knobs else []), *values]))}; a "
                             f"sweep compares values (bench.py sweep --knob {name}=V1,V2)")
        knobs[name] = values[0]
    table = network_report(preset, args.ops, args.size, args.channels, args.batch, measure=args.measure,
                           device=args.device or "cpu", impl=impl, progress=say, knobs=knobs)
    measured = measured_note(table, preset, args.batch, impl) if args.measure else ""
    emit(render(table, args.format, header, measured), args.out)
    failed = table[table["status"] != "ok"]
    if len(failed):  # the table is written with them, and the exit says it is not whole, as sweep's does
        print(f"network: {len(failed)} row(s) not ok: {', '.join(failed['operator'])}", file=sys.stderr)
        return 1
    return 0
