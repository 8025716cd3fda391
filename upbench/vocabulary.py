"""Units, the fixed words rows carry and how an error becomes a row's message, shared by the code that measures
and the code that reads rows back: reading, merging and exporting rows imports this leaf, never the measuring
modules (torch, its profiler)."""
from __future__ import annotations

MIB = 2**20
GIGA = 1e9
MEGA = 1e6

# The environment columns every row records, in the row layout's order (:func:`upbench.environment.environment`
# returns them).
ENVIRONMENT_FIELDS = ("device_name", "torch_version", "cuda_version", "cpu_model", "threads", "cpu_cores", "allocator",
                      "load_1min", "git_commit", "timestamp")
DIRTY = "+dirty"  # a commit with uncommitted edits: rows written before the edits' hash was added end with it

# A config of a sweep of several rounds whose rounds' medians differ by more than upbench.rounds.ROUNDS_DISAGREE,
# and one with fewer ok rounds than the sweep's (cut short, or rounds skipped by their budget).
ROUNDS_DISAGREE_DOUBT = "rounds disagree"
INCOMPLETE_DOUBT = "incomplete"
# The doubts that come from the machine while timing, not from the row's own settings (threads against
# cores, a row budget that allows few calls): measuring again can clear them (a resume's retry "suspect").
TRANSIENT_DOUBTS = ("descheduled", "shared", "unsteady", ROUNDS_DISAGREE_DOUBT)

# Shortest timing whose /proc/stat reading means something: a tick on another core over a few milliseconds would
# read as several cores of other work. A row timed for less records no cpu_others.
MIN_PROBE_S = 0.05

# A row's message is one line: a table cell, not a traceback.
MESSAGE_CHARS = 300


def first_line(error: BaseException) -> str:
    """The error's type and first line, trimmed: what a row's message column holds."""
    lines = str(error).strip().splitlines()
    text = f"{type(error).__name__}: {lines[0] if lines else ''}".rstrip(": ")
    return text if len(text) <= MESSAGE_CHARS else text[: MESSAGE_CHARS - 3] + "..."
