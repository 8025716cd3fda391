"""Whether a row log may be resumed by a sweep: its rows must be of the same spec (what differs is named) and,
unless mixing is allowed, measured with what this run measures with. Reading and writing logs is
:mod:`upbench.rowlog`'s; this module only decides what a resume may keep."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from .environment import environment
from .registry import source_digest
from .rowlog import check_log, whole_text
from .rounds import disagreeing_configs
from .rows import (MEASURED_WITH, SOURCE_HINT, latest_rows, measurement_keys, mixed_environments, read_rows,
                   rounds_of, rows_to_retry)
from .spec import AXIS_KEYS, SETTING_COLUMN_FIELDS, SETTING_KEYS, SETTING_NAMES, SweepSpec


def _measured_with_now(devices: list[str], operators: list[str], threads: int | None) -> pd.DataFrame:
    """What a row measured now on each of ``devices`` would record of :data:`MEASURED_WITH`, and one row
    per operator of ``operators`` with the source it would be measured with (no device)."""
    now = [{**environment(device), "device": device} for device in devices]
    if threads is not None:
        for row in now:
            row["threads"] = threads
    now += [{"operator": operator, "operator_source": source_digest(operator)} for operator in operators]
    return pd.DataFrame(now, columns=["device", *MEASURED_WITH, "operator", "operator_source"])


def _setting_as_given(column: str) -> str:
    """A setting column as the user gives it: its sweep-file key and its flag (``min_run_time (--min-run-time)``)."""
    key = SETTING_NAMES[SETTING_COLUMN_FIELDS.get(column, column)]
    return f"{key} (--{key.replace('_', '-')})"


def _shown(values: Iterable[Any]) -> str:
    return ", ".join(sorted({f"{value:g}" if isinstance(value, float) else str(value) for value in values}))


# A config's axes as the rows record them, and as the user gives them: (row column, flag, value of a config).
_AXES = (("C", "--C", lambda c: c.C), ("Cg", "--Cg", lambda c: c.Cg), ("N", "--N", lambda c: c.N),
         ("size", "--size", lambda c: f"{c.H}x{c.W}"), ("dtype", "--dtype", lambda c: c.dtype),
         ("mode", "--mode", lambda c: c.mode))


def _axis_differences(logged: pd.DataFrame, configs: list, complete: bool) -> list[str]:
    """The axes and knobs whose values in the log's rows differ from those this spec expands: 'N (--N) 1 in the log,
    2 now'. A log cut short shows only the values it reached: unless ``complete``, only values the log has and this
    spec lacks are said."""
    rows = logged.assign(size=[f"{h}x{w}" for h, w in zip(logged["H"], logged["W"])]) if "H" in logged else logged
    said = []
    for column, flag, value in _AXES:
        now = {value(config) for config in configs}
        then = set(rows[column].dropna()) if column in rows else set()
        if column == "Cg":
            now, then = now - {0}, then - {0}
        if then - now or (complete and then and now - then):
            said.append(f"{column} ({flag}) {_shown(then)} in the log, {_shown(now)} now")
    for knob in sorted({name for config in configs for name, _ in config.hparams}):
        now = {v for config in configs for name, v in config.hparams if name == knob}
        then = set(rows[knob].dropna().astype(int)) if knob in rows else set()
        flag = f"--{knob}" if knob in ("K", "d") else f"--knob {knob}="
        if then - now or (complete and then and now - then):
            said.append(f"{knob} ({flag}) {_shown(then)} in the log, {_shown(now)} now")
    return said


def spec_differences(logged: pd.DataFrame, spec: SweepSpec, expected_keys: set[str] | None = None) -> list[str]:
    """What the rows of a log show of how its spec differs from ``spec`` (which expands ``expected_keys``, where
    given): the settings its rows record, the number of configs, and configs only one of them has. A log of an
    older upbench records no settings; a log cut short shows only the configs it reached."""
    said = []
    for column, now in {**spec.settings(), "rounds": spec.rounds, "tf32": spec.tf32,  # rounds also where it is 1
                        **({"threads": spec.threads} if spec.threads is not None else {})}.items():
        then = {rounds_of(logged)} if column == "rounds" else set(logged[column].dropna()) if column in logged else set()
        if then and then != {now}:
            said.append(f"{_setting_as_given(column)} {_shown(then)} in the log, {_shown([now])} now")
    if "cache" in logged and set(logged["cache"].dropna()) - {"cold" if spec.l2_flush else "warm"}:
        said.append(f"l2_flush (--l2-flush) {'off' if spec.l2_flush else 'on'} in the log, "
                    f"{'on' if spec.l2_flush else 'off'} now")
    asked = set(spec.impls) - {"auto"}
    if "impl" in logged and "auto" not in spec.impls and set(logged["impl"].dropna()) - asked:
        said.append(f"impl (--impl) {_shown(logged['impl'].dropna())} in the log, {_shown(asked)} now")
    if expected_keys is None:
        return said
    totals = set(logged["config_total"].dropna().astype(int))
    if totals and totals != {len(expected_keys)}:
        said.append(f"the log's spec has {_shown(totals)} configs, this one {len(expected_keys)}")
    unexpanded = sorted(set(logged["key"]) - expected_keys)
    complete = bool(totals) and logged["key"].nunique() >= max(totals)
    axes = _axis_differences(logged, spec.expand(), complete) if unexpanded or totals != {len(expected_keys)} else []
    said += axes
    if unexpanded and not axes:
        more = ", ..." if len(unexpanded) > 2 else ""
        said.append(f"configs this one does not have: {', '.join(unexpanded[:2])}{more}")
    elif not said:
        index = {config.key: position for position, config in enumerate(spec.expand())}
        if any(index.get(key) != int(position) for key, position in zip(logged["key"], logged["config_index"])):
            said.append("the same configs in another order (--ops, --size or another list given in another order)")
    if not said:
        said.append("nothing the rows record: a flag given now and not then, or the other way round, though at the "
                    "value the rows show (--threads, --K, --d or --knob at the operator's default, --impl, "
                    "--device auto, --warmup 0 and 1, which both make one call)")
    return said


def check_same_spec(path: Path, logged: pd.DataFrame, spec: SweepSpec, expected_keys: set[str] | None = None) -> None:
    """ValueError naming what differs where the rows ``logged`` from ``path`` are of another spec than ``spec``."""
    others = sorted(set(logged["spec_id"].dropna()) - {spec.spec_id})
    if others:
        seen = spec_differences(logged, spec, expected_keys)
        raise ValueError(f"{path}: holds rows of spec {', '.join(others)}, not of this spec {spec.spec_id}"
                         f"{' (' + '; '.join(seen) + ')' if seen else ''}: every "
                         f"axis, knob and setting ({', '.join([*AXIS_KEYS, 'knobs', *SETTING_KEYS])}) must be as "
                         f"when the log was started; refusing to resume into it")


def logged_keys(path: Path, spec: SweepSpec, columns: list[str], expected_keys: set[str],
                allow_mixed: bool = False, retry: tuple[str, ...] = ()) -> set[str]:
    """Keys of the measurements ``path`` holds (:func:`upbench.rows.measurement_key`: a config, and its round in
    a sweep of several), after checking every line, that they belong to ``spec``, that they are among
    ``expected_keys`` (the configs this run expands) and, unless ``allow_mixed``, that they were measured with
    what this run measures with (:data:`MEASURED_WITH`). ``retry``: leave out the measurements whose last row
    failed or timed suspect (:func:`rows_to_retry`), and with "suspect" every round of a config whose rounds
    disagree, so they are measured again."""
    text = whole_text(path)[0] if path.exists() else ""  # a torn last line is cut only once the log is accepted
    if not text:
        return set()
    check_log(path, columns, text=text)
    logged = latest_rows(read_rows(io.StringIO(text, newline="")))
    check_same_spec(path, logged, spec, expected_keys)
    unexpected = sorted(set(logged["key"]) - expected_keys)
    if unexpected:
        raise ValueError(f"{path}: holds rows of configs this run does not expand ({', '.join(unexpected[:3])}"
                         f"{', ...' if len(unexpected) > 3 else ''}): impl auto resolves to compiled only where the "
                         f"kernels build, and operators come from plugins; refusing to resume into it")
    if not allow_mixed:
        now = _measured_with_now(sorted(set(logged["device"].dropna())), sorted(set(logged["operator"].dropna())),
                                 spec.threads)
        mixed = mixed_environments(pd.concat([logged, now], ignore_index=True))
        if mixed:
            raise ValueError(f"{path}: its rows were measured with another setup than this run's "
                             f"({'; '.join(mixed)}{SOURCE_HINT if any(': source ' in m for m in mixed) else ''}); "
                             f"resuming would mix them in one table: resume where they were measured, choose "
                             f"another --out, or pass --allow-mixed")
    again = rows_to_retry(logged, retry)
    if "suspect" in retry:
        again |= logged["key"].isin(disagreeing_configs(logged))
    return set(measurement_keys(logged)[~again])
