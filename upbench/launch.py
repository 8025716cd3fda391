"""One sweep spread over shards that run as jobs through submitit: a Slurm job array where Slurm is
present, local processes otherwise (a workstation: one shard per GPU). Each shard appends to its own
CSV log and resumes from it when it is requeued or started again; the launcher polls the logs for
one progress bar over all shards and, when the jobs end, merges the logs into one CSV (the command
writes the reports beside it, as for a sweep in one process).

Layout for ``--out results/x.csv``: the shard logs ``results/x.shards/shard<i>of<n>.csv``, submitit's
job files and job stdout/stderr under ``results/x.shards/submitit/``, the merged ``results/x.csv``.
"""
from __future__ import annotations

import csv
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd

from .checks import comma_items, is_whole
from .isolate import check_row_timeout
from .registry import load_plugins, replay_sources
from .resume import check_same_spec
from .rowlog import check_not_being_written, check_replaceable, holds_nothing, read_log
from .rounds import combine_rounds
from .rows import IncompleteSweep, check_complete, check_resume_retry, merge_frames, write_csv
from .spec import SweepSpec
from .sweep import progress_bar, run_sweep
from .vocabulary import MESSAGE_CHARS, first_line

CLUSTERS = ("auto", "slurm", "local")
# submitit's local executor kills a job after 2 minutes unless told otherwise: a week, for local runs.
LOCAL_TIMEOUT_MIN = 7 * 24 * 60


def as_spec(spec: SweepSpec | Mapping[str, Any]) -> SweepSpec:
    return spec if isinstance(spec, SweepSpec) else SweepSpec.from_mapping(spec)


@dataclass(frozen=True)
class ShardTask:
    """What one job runs: shard ``shard`` of the sweep, appended to (and resumed from) ``log``.

    ``spec`` may be the mapping of sweep-file names rather than a SweepSpec, so that ``device: auto``
    resolves on the node that measures, not on the one that submits. submitit calls ``checkpoint``
    when Slurm preempts the job or its time runs out: the requeued job runs the same task, which
    resumes from its log.
    """

    spec: SweepSpec | Mapping[str, Any]
    log: Path
    shard: tuple[int, int]
    isolate: bool = False
    row_timeout: float | None = None
    plugin_sources: tuple[str, ...] = ()  # what a job loads to know operators from plugins (registry.replay_sources)
    allow_mixed: bool = False
    retry: tuple[str, ...] = ()

    def __call__(self) -> int:
        load_plugins(self.plugin_sources)
        rows = run_sweep(as_spec(self.spec), self.log, resume=True, shard=self.shard, isolate=self.isolate,
                         row_timeout=self.row_timeout, allow_mixed=self.allow_mixed, retry=self.retry)
        return len(rows)

    def checkpoint(self) -> Any:
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self)


@dataclass(frozen=True)
class Resources:
    """What each shard's job asks for. ``gpus`` None: one when the sweep measures on CUDA, else none."""

    cluster: str = "auto"
    partition: str | None = None
    gpus: int | None = None
    cpus: int | None = None
    mem_gb: float | None = None
    timeout_min: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)  # more submitit parameters, e.g. slurm_qos

    def __post_init__(self) -> None:
        if self.cluster not in CLUSTERS:
            raise ValueError(f"cluster {self.cluster!r}: expected one of {', '.join(CLUSTERS)}")
        for name in ("gpus", "cpus", "timeout_min"):
            value = getattr(self, name)
            if value is not None and not is_whole(value, 0):
                raise ValueError(f"{name}={value!r}: expected a non-negative integer")


@dataclass
class Launched:
    """The merged rows (written to the launch's ``out``; here one per config, its rounds combined) and what went wrong
    (failed shards, missing configs)."""

    rows: pd.DataFrame
    problems: list[str]


def shard_folder(out: Path) -> Path:
    """Where the shards of a launch to ``out`` keep their logs and submitit its job files: x.csv -> x.shards/."""
    return out.with_suffix(".shards")


def shard_logs(out: Path, shards: int) -> list[Path]:
    folder = shard_folder(out)
    return [folder / f"shard{index}of{shards}.csv" for index in range(shards)]


def _submitit() -> Any:
    try:
        import submitit
    except ImportError:
        raise ValueError("--launcher submitit needs submitit: pip install 'upbench[cluster]' (or submitit)") from None
    return submitit


def cluster_name(resources: Resources) -> str:
    """The executor the jobs go to: ``auto`` is Slurm where it is present, else local processes."""
    return _submitit().AutoExecutor.which() if resources.cluster == "auto" else resources.cluster


def gpus_per_shard(spec: SweepSpec | Mapping[str, Any], resources: Resources, cluster: str) -> int:
    """The GPUs each job asks for: as given, else one when the sweep measures on CUDA.

    A mapping's ``device: auto`` resolves on the measuring node; on a cluster the submitting node
    cannot tell what that will be, so it must be said (``--device cuda`` or ``cpu``).
    """
    if resources.gpus is not None:
        return resources.gpus
    if cluster != "local" and _device_resolved_by_jobs(spec):
        raise ValueError(f"device auto on {cluster}: the submitting node cannot tell whether the jobs get a GPU; "
                         f"give --device cuda (or cpu), or --gpus-per-shard")
    return int(any(device.startswith("cuda") for device in as_spec(spec).devices))


def _executor(out: Path, resources: Resources, cluster: str, gpus: int, shards: int) -> Any:
    executor = _submitit().AutoExecutor(folder=shard_folder(out) / "submitit", cluster=cluster)
    executor.update_parameters(
        name=f"upbench-{out.stem}", tasks_per_node=1, gpus_per_node=gpus, cpus_per_task=resources.cpus,
        mem_gb=resources.mem_gb, timeout_min=resources.timeout_min,
        local_timeout_min=resources.timeout_min or LOCAL_TIMEOUT_MIN,
        slurm_partition=resources.partition, slurm_array_parallelism=shards, **resources.extra,
    )
    return executor


def _local_gpu_sets(shards: int, gpus: int) -> list[list[int]]:
    """Disjoint GPUs for each local shard: two shards timing on one GPU would disturb each other."""
    import torch

    present = torch.cuda.device_count()
    if shards * gpus > present:
        raise ValueError(f"{shards} local shards x {gpus} GPU(s) need {shards * gpus} GPUs; this machine has {present}")
    return [list(range(index * gpus, (index + 1) * gpus)) for index in range(shards)]


def submit_shards(tasks: list[ShardTask], out: Path, resources: Resources, cluster: str, gpus: int) -> list[Any]:
    """One job per task: a job array on Slurm; on the local executor each job gets its own GPUs."""
    executor = _executor(out, resources, cluster, gpus, len(tasks))
    if cluster == "local":
        jobs = []
        gpu_sets = _local_gpu_sets(len(tasks), gpus) if gpus else [[]] * len(tasks)
        for task, gpu_set in zip(tasks, gpu_sets):
            if gpu_set:
                executor.update_parameters(local_visible_gpus=gpu_set)
            jobs.append(executor.submit(task))
        return jobs
    with executor.batch():
        jobs = [executor.submit(task) for task in tasks]
    return jobs


def _logged(path: Path) -> tuple[int, int | None]:
    """Measurements in a shard log's complete rows (a config, and its round in a sweep of several: a row a resume
    measured again counts once), and the sweep's count of them (its configs, times its rounds; None before the
    first row)."""
    try:
        with open(path, newline="") as handle:
            lines = handle.read().splitlines(keepends=True)
    except FileNotFoundError:
        return 0, None
    complete = [line for line in lines[1:] if line.endswith("\n")]
    if not complete:
        return 0, None
    header = next(csv.reader(lines[:1]))
    rows = list(csv.reader(complete))
    rounds = int(rows[0][header.index("rounds")]) if "rounds" in header else 1
    identity = [header.index(column) for column in ("key", "round") if column in header]
    measured = {tuple(row[i] for i in identity) for row in rows if len(row) == len(header)}
    return len(measured), int(rows[0][header.index("config_total")]) * rounds


def follow(jobs: list[Any], logs: list[Path], progress: bool | None, poll_s: float) -> None:
    """Wait for the jobs, with one progress bar over the rows of all shard logs."""
    with progress_bar(None, progress, desc=f"{len(jobs)} shards") as bar:
        while True:
            done = [job.done() for job in jobs]  # read before the logs, so the last rows are counted
            counts = [_logged(path) for path in logs]
            totals = {total for _, total in counts if total is not None}
            if totals and bar.total is None:
                bar.total = totals.pop()
            bar.n = sum(rows for rows, _ in counts)
            bar.set_postfix_str(f"{len(done) - sum(done)} running", refresh=False)
            bar.refresh()
            if all(done):
                return
            time.sleep(poll_s)


def job_error(error: BaseException) -> str:
    """One line on why a job failed: the last line of its traceback (submitit puts it between dashed
    lines), or, for a job that died without a result (killed, or crashed outside Python), its state."""
    lines = [line.strip() for line in str(error).splitlines()]
    dashed = [i for i, line in enumerate(lines) if line and set(line) == {"-"}]
    between = [line for line in lines[dashed[0] + 1:dashed[1]] if line] if len(dashed) >= 2 else []
    if between:  # submitit 1.5 leaves a blank line before the closing dashes
        return between[-1][:MESSAGE_CHARS]
    ended = next((line for line in lines if "(state:" in line), None)
    return f"the job {ended}; it was killed or crashed" if ended else first_line(error)


def merge_logs(logs: Iterable[Path], out: Path, allow_mixed: bool = False) -> pd.DataFrame:
    """The shard logs as one CSV at ``out`` (see :func:`merge_frames`); a shard's log that holds nothing (absent,
    empty, or a header its killed job left torn) is left out, as ``merge`` leaves it out."""
    frames = [read_log(path) for path in logs if path.exists() and not holds_nothing(path)]
    if not frames:
        raise RuntimeError("no shard wrote its log: nothing to merge (see the job logs under "
                           f"{shard_folder(out) / 'submitit'})")
    rows = merge_frames(frames, allow_mixed)
    write_csv(rows, out)
    return rows


def _device_resolved_by_jobs(spec: SweepSpec | Mapping[str, Any]) -> bool:
    """Whether each job resolves the device (a mapping's auto or best): this node's spec_id may then differ."""
    if isinstance(spec, SweepSpec):
        return False
    return any(str(device).lower() in ("auto", "best") for device in comma_items(spec.get("device", "auto")))


def launch_sweep(
    spec: SweepSpec | Mapping[str, Any],
    out: str | Path,
    shards: int,
    resources: Resources = Resources(),
    *,
    resume: bool = False,
    isolate: bool = False,
    row_timeout: float | None = None,
    allow_mixed: bool = False,
    retry: tuple[str, ...] = (),
    progress: bool | None = None,
    poll_s: float = 2.0,
) -> Launched:
    """Run the sweep as ``shards`` jobs, wait for them and merge their logs into the CSV ``out``.

    ``spec``: a SweepSpec, or the mapping of sweep-file names (resolved by each job, so ``auto``
    devices are those of the measuring node). ``resume``: continue the shard logs of an earlier
    launch to the same ``out`` (without it they are refused). Failed jobs and configs without a row
    are listed in the result's ``problems``; the rows that exist are merged all the same. ``allow_mixed``:
    shards (or a requeued job) may measure with different devices, software or threads. ``retry``: with
    ``resume``, the configs whose logged row failed or timed suspect are measured again (see run_sweep).
    """
    out = Path(out)
    if not is_whole(shards, 1):
        raise ValueError(f"shards={shards!r}: expected a positive integer")
    retry = check_resume_retry(retry, resume)
    local_spec = as_spec(spec)  # checked here, before anything is submitted
    check_row_timeout(row_timeout, isolate, local_spec)  # each shard's own check came after its job started
    logs = shard_logs(out, shards)
    earlier = [path for path in [out, *logs] if path.exists() and path.stat().st_size > 0]
    if earlier and not resume:
        raise FileExistsError(f"{earlier[0]} exists: resume the launch (--resume) or choose another --out")
    for log in earlier if not _device_resolved_by_jobs(spec) else []:  # refused here, not by every job once it ran
        if log != out and not holds_nothing(log):
            check_same_spec(log, read_log(log), local_spec)
    for log in logs:  # each job would refuse it once started; a launcher killed outright leaves its local jobs going
        try:
            check_not_being_written(log)
        except ValueError as error:
            raise ValueError(f"{error}: a job of an earlier launch to {out} is still running (a launcher killed "
                             f"outright, or one still going, leaves its jobs running; their output is under "
                             f"{shard_folder(out) / 'submitit'})") from None
    if out in earlier:  # the merge at the end replaces it: only an earlier merge of these shards may be replaced
        try:
            check_replaceable(out, logs)
        except ValueError as error:
            others = sorted(set(shard_folder(out).glob("shard*of*.csv")) - set(logs))
            hint = f" (the shard logs of another --shards are there: {', '.join(map(str, others))})" if others else ""
            raise ValueError(f"{error}; a launch resumes its shard logs only, never --out{hint}") from None
    cluster = cluster_name(resources)
    gpus = gpus_per_shard(spec, resources, cluster)
    plugin_sources = tuple(replay_sources(local_spec.ops))
    tasks = [ShardTask(spec, log, (index, shards), isolate, row_timeout, plugin_sources, allow_mixed, retry)
             for index, log in enumerate(logs)]
    jobs = submit_shards(tasks, out, resources, cluster, gpus)
    try:
        follow(jobs, logs, progress, poll_s)
    except BaseException:  # Ctrl-C: no job may go on writing a log that a --resume would write too
        for job in jobs:
            job.cancel(check=False)
        raise
    problems = []
    for index, job in enumerate(jobs):
        error = job.exception()
        if error is not None:
            problems.append(f"shard {index}/{shards} (job {job.job_id}) failed: {job_error(error)}; "
                            f"its log: {job.paths.stderr}")
    rows = merge_logs(logs, out, allow_mixed)
    try:
        check_complete(rows)
    except IncompleteSweep as incomplete:
        problems.append(f"{incomplete}: --resume measures them")
    return Launched(combine_rounds(rows), problems)
