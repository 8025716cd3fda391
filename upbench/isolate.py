"""Measuring rows in a child process, so that a row which kills its process (a segfault, an abort, a
CUDA error that poisons the context, a hung kernel) becomes a recorded row and the sweep goes on.

One persistent worker measures row after row, so its imports, CUDA context and compiled kernels are
paid for once, not per row. When a row kills the worker, raises a CUDA error or outlives the row
timeout, the row is recorded with status ``crash`` or ``timeout`` and a fresh worker takes the next
row. Workers are started with ``spawn``: a forked child of a process that has touched CUDA cannot
use CUDA, and a spawned one starts clean whatever the parent did.
"""
from __future__ import annotations

import ctypes
import multiprocessing
import multiprocessing.util
import os
import re
import signal
import sys
import threading
import time
from contextlib import contextmanager
from multiprocessing.connection import Connection
from typing import Any, Iterator

import torch

from . import kernels
from .measure import failed_row, measure_config
from .registry import load_plugins, replay_sources
from .spec import Config, SweepSpec

# Errors after which the CUDA context of the process is unusable: every later call would fail too.
CUDA_ERROR = re.compile(r"CUDA error|AcceleratorError|CUBLAS_STATUS|CUDNN_STATUS|device-side assert")
STARTUP_TIMEOUT_S = 1800.0  # a worker's first kernel build can take minutes
STOP_GRACE_S = 5.0


PR_SET_PDEATHSIG = 1  # linux/prctl.h
PARENT_POLL_S = 1.0


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_S)
    os._exit(1)


def _exit_with_parent(parent: int, started_by_main_thread: bool) -> None:
    """End this worker when its parent dies. A parent killed by SIGKILL (or SIGTERM without a handler, as a
    batch system's kill sends it) runs no cleanup, and ``daemon=True`` relies on that cleanup: the worker
    would live on with its row's core or GPU. On Linux the kernel sends SIGKILL when the thread that started
    the worker dies, which covers a worker hung inside a kernel (only the main thread's lifetime is the
    process's); a watcher thread covers the rest, as long as the worker still runs Python."""
    if started_by_main_thread and sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # died before the watch began
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent,), name="upbench-parent-watch", daemon=True).start()


def _serve(connection: Connection, plugin_sources: list[str], threads: int, load_kernels: bool, parent: int,
           started_by_main_thread: bool) -> None:
    """The worker: measure each (config, spec, index, total, round) it receives until told to stop."""
    _exit_with_parent(parent, started_by_main_thread)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it stops the worker
    torch.set_num_threads(threads)
    load_plugins(plugin_sources)  # operators from plugins and modules outside the operators package
    if load_kernels:
        kernels.compiled_available()
    connection.send("ready")
    while True:
        try:
            job = connection.recv()
        except EOFError:  # the parent is gone
            return
        if job is None:
            return
        connection.send(measure_config(*job))


def check_row_timeout(row_timeout: float | None, isolate: bool = True, spec: SweepSpec | None = None) -> None:
    """Raise ValueError unless ``row_timeout`` is None or a positive number of seconds, with isolation, and
    (given the ``spec``) above the time each of its rows spends timing."""
    if row_timeout is None:
        return
    if not isolate:
        raise ValueError("a row timeout needs isolation (--isolate): a hung row can only be stopped in a child process")
    if isinstance(row_timeout, bool) or not isinstance(row_timeout, (int, float)) or not row_timeout > 0:
        raise ValueError(f"row_timeout={row_timeout!r}: expected a positive number of seconds")
    # a row times its calls for min_run_time seconds (less only where its budget is shorter): a row timeout
    # not above that killed every row, one timeout after another, and then the sweep said each had hung
    if spec is not None and spec.min_run_time <= spec.row_budget_s and row_timeout <= spec.min_run_time:
        raise ValueError(f"row timeout {row_timeout:g} s: every row times its calls for {spec.min_run_time:g} s "
                         f"(--min-run-time), so every row would time out; expected a row timeout well above "
                         f"{spec.min_run_time:g} s, or a shorter --min-run-time")


def describe_exit(exitcode: int | None) -> str:
    """How a worker process ended, for a row's message."""
    if exitcode is None:
        return "the worker process did not exit"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = "an unknown signal"
        return f"the worker process died of {name} (signal {-exitcode})"
    return f"the worker process exited with code {exitcode}"


def _spawn_in_own_process_group(path: str, args: list[str], passfds: list[int]) -> int:
    """Start ``args`` as multiprocessing's spawn does (the ``passfds`` kept open, nothing else of ours), in a
    process group of its own. Each fd's inheritability is put back as it was: the resource tracker's
    passfds hold stderr, and leaving fd 2 close-on-exec would start every later worker without one."""
    inheritable = {fd: os.get_inheritable(fd) for fd in passfds}
    for fd in passfds:
        os.set_inheritable(fd, True)
    try:
        return os.posix_spawn(path, args, os.environ, setpgroup=0)
    finally:
        for fd, was in inheritable.items():
            os.set_inheritable(fd, was)


_SPAWN_LOCK = threading.Lock()  # one patched start at a time


@contextmanager
def _own_process_group() -> Iterator[None]:
    """Workers started meanwhile get a process group of their own. A terminal's Ctrl-C goes to its foreground
    group: a worker in it, still importing torch, would die of KeyboardInterrupt with a traceback over the
    parent's one-line answer. Out of it, only the parent hears the key, and stops the worker itself. (Ignoring
    SIGINT around the start instead lets another thread of the parent discard a Ctrl-C.)"""
    if not hasattr(os, "posix_spawn") or not hasattr(multiprocessing.util, "spawnv_passfds"):
        yield
        return
    with _SPAWN_LOCK:
        default = multiprocessing.util.spawnv_passfds
        multiprocessing.util.spawnv_passfds = _spawn_in_own_process_group
        try:
            yield
        finally:
            multiprocessing.util.spawnv_passfds = default


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)  # the signals that stop a sweep (KeyboardInterrupt, Terminated)


@contextmanager
def _stop_signals_held() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM until the block ends, then deliver them as they came. Spawning a worker writes
    its start-up data after the child exists: a stop raised between the two left a child reading a truncated
    pipe, which printed an EOFError traceback over the parent's one-line answer, and a worker the parent
    did not yet know about. Held, the stop is raised once the worker is recorded, and stopped with the rest.
    Only the main thread hears signals; elsewhere there is nothing to hold."""
    if (threading.current_thread() is not threading.main_thread()
            or any(signal.getsignal(signum) is None for signum in STOP_SIGNALS)):  # a handler set outside Python
        yield
        return
    heard: list[int] = []
    previous = {signum: signal.signal(signum, lambda signum, frame: heard.append(signum))
                for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for signum in dict.fromkeys(heard):
            signal.raise_signal(signum)


class IsolatedMeasurer:
    """Measures each config in a worker process; a row that crashes or hangs it is a ``crash`` /
    ``timeout`` row and the next row gets a fresh worker. Use as a context manager."""

    def __init__(self, spec: SweepSpec, row_timeout: float | None = None, load_kernels: bool = False):
        check_row_timeout(row_timeout, spec=spec)
        self.spec = spec
        self.row_timeout = row_timeout
        self.load_kernels = load_kernels
        self.plugin_sources = replay_sources(spec.ops)
        self.context = multiprocessing.get_context("spawn")
        self.process: Any = None
        self.connection: Connection | None = None
        self.starts = 0  # workers started: 1 plus one per crash or timeout

    def __enter__(self) -> "IsolatedMeasurer":
        return self

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        # stopped by an error or Ctrl-C, the worker may be mid-row and would not read the request to leave until
        # the row ends (a hung row: never): it is killed at once, not after the grace
        self.stop(kill=kind is not None)

    def start(self) -> Connection:
        """Start a worker and wait until it is ready (measure starts one when it needs one)."""
        parent_end, child_end = self.context.Pipe()
        process = self.context.Process(
            target=_serve, args=(child_end, self.plugin_sources, torch.get_num_threads(), self.load_kernels,
                                 os.getpid(), threading.current_thread() is threading.main_thread()),
            name="upbench-row-worker", daemon=True,
        )
        with _stop_signals_held(), _own_process_group():
            process.start()
            child_end.close()  # so the worker's death reads as end-of-file here
            self.process, self.connection = process, parent_end
            self.starts += 1
        ready = parent_end.poll(STARTUP_TIMEOUT_S)
        try:
            if ready and parent_end.recv() == "ready":
                return parent_end
        except EOFError:
            pass
        exitcode = self.stop(kill=True)
        raise RuntimeError(f"the isolated row worker did not start: {describe_exit(exitcode)} "
                           f"(its traceback, if any, is on stderr above)")

    def stop(self, kill: bool = False) -> int | None:
        """End the worker (asked to leave, killed if ``kill`` or if it does not) and return its exit code."""
        process, connection = self.process, self.connection
        if process is None or connection is None:
            return None
        if not kill:
            try:
                connection.send(None)
            except OSError:
                pass
            process.join(STOP_GRACE_S)
        if process.is_alive():
            process.kill()
        process.join()
        connection.close()
        self.process = self.connection = None
        return process.exitcode

    def measure(self, config: Config, index: int, total: int, round_number: int = 1) -> dict[str, Any]:
        """One finished row, whatever happens to the worker."""
        connection = self.connection or self.start()
        connection.send((config, self.spec, index, total, round_number))
        if not connection.poll(self.row_timeout):
            self.stop(kill=True)
            return failed_row(config, self.spec, index, total, "timeout",
                              f"the row outlived the {self.row_timeout:g} s row timeout; its worker was killed",
                              round_number)
        try:
            row = connection.recv()
        except EOFError:
            exitcode = self.stop(kill=True)
            return failed_row(config, self.spec, index, total, "crash", describe_exit(exitcode), round_number)
        if row["status"] == "error" and CUDA_ERROR.search(row["message"] or ""):
            self.stop(kill=True)  # its CUDA context is unusable: the next row gets a fresh worker
            row["status"] = "crash"
        return row
