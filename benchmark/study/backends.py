"""Where a study's cells run: a worker executes one job; backends hand jobs out and collect results.

Backends (`executor.backend` in params.yaml):
- `local`: one worker process per cell on this machine, at most `workers` at a time; each gets
  `cores // workers` torch threads so that workers do not oversubscribe the cores. A worker that
  dies (a signal, the OOM killer, os._exit) or overruns its time limit costs only its own cell,
  which the driver records as failed with how it ended.
- `serial`: every cell in this process, one after the other (debugging); the time limit stops
  Python code, but a cell that kills its process takes the study with it.
- `ray`: each cell is a Ray task with its own CPU/GPU request, on the cluster at `RAY_ADDRESS`
  (or a local Ray instance when unset). Results come back to the driver, which writes them, so
  workers need no shared disk; MLflow must then be a tracking server (`MLFLOW_TRACKING_URI`).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
import os
import signal
import tempfile
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmark.cell.runner import run_cell
from benchmark.cell.training import ProgressStyle
from benchmark.core.errors import CellFailed
from benchmark.core.io import write_json_atomic
from benchmark.core.paths import FAILED_FILE, METRICS_FILE
from benchmark.core.tracking import TrackingSettings
from benchmark.study.cells import Cell
from benchmark.study.gpus import assign_gpu, visible_gpus
from benchmark.study.profiles import ExecutorSettings

# ----------------------------------------------------------------------------------------------
# What one worker does with one cell


# Settings a worker must see as they are now in the study process. Pool workers fork from a
# server started earlier (and Ray workers live elsewhere), so they are sent with every job.
FORWARDED_ENV = (
    "PRUNING_BENCH_PLUGINS",
    "BENCHMARK_RESULTS",
    "BENCHMARK_CHECKPOINTS",
    "MLFLOW_TRACKING_URI",
    "MLFLOW_DISABLE_TELEMETRY",
)


@dataclass
class Job:
    cell: Cell
    tracking: TrackingSettings
    save_model: bool
    threads: int | None
    progress_prefix: str
    env: dict[str, str | None] = field(default_factory=lambda: {k: os.environ.get(k) for k in FORWARDED_ENV})
    time_limit: float | None = None  # seconds; None or 0: no limit


class TimedOut(CellFailed):
    def __init__(self, seconds: float):
        super().__init__(f"timed out after {seconds:g} s")


# A worker stuck in native code does not see the timer; the driver kills it this much later.
HARD_LIMIT_GRACE = 30.0


def hard_limit(job: Job) -> float | None:
    return job.time_limit + max(HARD_LIMIT_GRACE, 0.1 * job.time_limit) if job.time_limit else None


@contextlib.contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raise `TimedOut` in the cell's own code after `seconds`: the cell then fails like any other
    (its MLflow run closed FAILED, failed.json written). Needs the main thread; elsewhere the
    driver's hard limit is all there is."""
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise TimedOut(seconds)

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _apply_env(env: dict[str, str | None]) -> None:
    for key, value in env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _set_threads(threads: int | None) -> None:
    if threads is None:
        return
    import torch

    torch.set_num_threads(threads)


def _failure_record(cell: Cell, exc: BaseException) -> dict[str, Any]:
    message = f"{type(exc).__name__}: {exc}".splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, CellFailed):  # its message says it all: "diverged at epoch k: ..."
        message = str(exc)
    return {
        "status": "failed",
        "error": message[:2000],
        "traceback": traceback.format_exc()[-4000:],
        "label": cell.label,
        "failed_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def execute(job: Job, out: Path | None = None) -> dict[str, Any]:
    """Run one cell into `out` (default: the cell's folder). Never raises for a failing cell."""
    out = Path(out or job.cell.out)
    _apply_env(job.env)
    _set_threads(job.threads)
    style = ProgressStyle(lines=True, bars=False, prefix=job.progress_prefix)  # workers share one terminal
    start = time.perf_counter()
    try:
        with time_limit(job.time_limit):
            metrics = run_cell(job.cell.config, out, tracking=job.tracking, progress=style, save_model=job.save_model)
    except Exception as exc:  # noqa: BLE001 - the study goes on; the failure is recorded beside the cell
        record = _failure_record(job.cell, exc)
        try:
            out.mkdir(parents=True, exist_ok=True)
            write_json_atomic(out / FAILED_FILE, record)
        except OSError as write_error:  # e.g. a full disk: the driver records it (or stops with one line)
            record["recorded"] = False
            record["error"] += f" (and {FAILED_FILE} could not be written: {write_error.strerror or write_error})"
        return {**record, "seconds": time.perf_counter() - start}
    (out / FAILED_FILE).unlink(missing_ok=True)
    return {"status": "finished", "top1": metrics["top1"], "seconds": time.perf_counter() - start}


def _oom_kills() -> int:
    """How many processes the kernel's OOM killer has killed since boot (0 where it cannot be read)."""
    try:
        for line in Path("/proc/vmstat").read_text().splitlines():
            if line.startswith("oom_kill "):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def death_record(cell: Cell, exitcode: int | None, oom_before: int) -> dict[str, Any]:
    """How a worker that sent no result ended, for the driver to record (`recorded: False`)."""
    if exitcode is not None and exitcode < 0:
        number = -exitcode
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = "unknown signal"
        how = f"was killed by signal {number} ({name})"
        if number == signal.SIGKILL and _oom_kills() > oom_before:
            how = "was killed by the kernel's OOM killer (out of memory)"
    elif exitcode:
        how = f"exited with code {exitcode}"
    else:
        how = "ended"
    return driver_record(cell, f"the worker process {how} before the cell recorded a result")


def driver_record(cell: Cell, error: str) -> dict[str, Any]:
    return {
        "status": "failed",
        "error": error,
        "label": cell.label,
        "failed_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "recorded": False,  # the driver writes failed.json and closes the cell's MLflow run
    }


_PARENT_PID: int | None = None


def _worker_init(threads: int | None) -> None:
    """Pool worker start-up: torch threads, and exit if the study process disappears (SIGKILL)."""
    global _PARENT_PID
    _set_threads(threads)
    _PARENT_PID = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != _PARENT_PID:
                os._exit(1)  # orphaned: the cell in hand is redone when the study resumes

    threading.Thread(target=watch, daemon=True).start()


def _run_child(job: Job, sender: Any, threads: int | None) -> None:
    """A local worker process: one cell, its result sent back through `sender`."""
    _worker_init(threads)
    sender.send(execute(job))
    sender.close()


def execute_collect(job: Job) -> dict[str, Any]:
    """Ray task: run into a private folder and ship the files back to the driver."""
    with tempfile.TemporaryDirectory(prefix="cell-") as tmp:
        result = execute(job, Path(tmp))
        result["files"] = {p.name: p.read_bytes() for p in Path(tmp).iterdir() if p.is_file()}
    return result


def store_files(out: Path, files: dict[str, bytes]) -> None:
    """Write the files a remote cell produced; metrics.json last, so a half-copied cell is not done."""
    out.mkdir(parents=True, exist_ok=True)
    for name in sorted(files, key=lambda n: n == METRICS_FILE):
        tmp = out / f".{name}.tmp"
        tmp.write_bytes(files[name])
        os.replace(tmp, out / name)
    if METRICS_FILE in files:
        (out / FAILED_FILE).unlink(missing_ok=True)


# ----------------------------------------------------------------------------------------------
# Backends: submit a job, get finished ones back


@dataclass
class _Running:
    process: Any
    receiver: Any
    job: Job
    started: float
    oom_before: int


# What the fork server imports once, so that no cell process pays for it (seconds per cell on a 2-core
# machine otherwise): the harness (torch, timm); what a cell's MLflow tracker imports lazily, among them
# the sqlite store (SQLAlchemy, 1.1 s) and the context tags' git reader; scikit-learn's split and digits
# loader (1.5 s; imported where used, so the data stage starts sooner). tests/test_execution.py checks
# that a cell process imports none of them itself.
PRELOAD = [
    "benchmark.study.backends",
    "mlflow.tracking",
    "mlflow.entities",
    "mlflow.tracking.context.registry",
    "mlflow.store.tracking.sqlalchemy_store",
    "git",
    "sklearn.model_selection",
    "sklearn.datasets",
]


class LocalBackend:
    """One process per cell, forked from a server that has imported the harness (torch, timm) but run
    nothing, so a cell starts in a fraction of a second; forking this process, which may already have
    run torch, would be unsafe. A dead or overdue worker is the driver's to record. GPUs: `assign_gpu`."""

    def __init__(self, workers: int, threads: int | None, gpus: list[str] | None = None):
        self.workers, self.threads = workers, threads
        self.gpus = visible_gpus() if gpus is None else gpus
        self.context = multiprocessing.get_context("forkserver")
        self.context.set_forkserver_preload(PRELOAD)
        self.running: dict[Any, _Running] = {}

    def submit(self, key: Any, job: Job) -> None:
        job = assign_gpu(job, self.gpus, [r.job for r in self.running.values()])
        receiver, sender = self.context.Pipe(duplex=False)
        process = self.context.Process(target=_run_child, args=(job, sender, self.threads), name=job.cell.label)
        process.start()
        sender.close()
        self.running[key] = _Running(process, receiver, job, time.monotonic(), _oom_kills())

    def wait(self) -> list[tuple[Any, dict[str, Any]]]:
        while True:
            handles = [h for r in self.running.values() for h in (r.receiver, r.process.sentinel)]
            ready = set(multiprocessing.connection.wait(handles, timeout=1.0))
            results = []
            for key, run in list(self.running.items()):
                limit = hard_limit(run.job)
                if run.receiver in ready or run.process.sentinel in ready:
                    results.append((key, self._finish(run)))
                elif limit is not None and time.monotonic() - run.started > limit:
                    run.process.kill()
                    run.process.join()
                    record = driver_record(run.job.cell, f"timed out after {run.job.time_limit:g} s")
                    results.append((key, {**record, "seconds": time.monotonic() - run.started}))
                else:
                    continue
                run.receiver.close()
                del self.running[key]
            if results:
                return results

    @staticmethod
    def _finish(run: _Running) -> dict[str, Any]:
        result = None
        try:
            if run.receiver.poll():
                result = run.receiver.recv()
        except (EOFError, OSError):  # the worker died before it sent anything
            pass
        run.process.join()
        if result is None:
            result = death_record(run.job.cell, run.process.exitcode, run.oom_before)
        result.setdefault("seconds", time.monotonic() - run.started)
        return result

    def close(self) -> None:
        for run in self.running.values():  # the study stopped early: its cells are redone on resume
            run.process.kill()
            run.process.join()
        self.running.clear()


class SerialBackend:
    def __init__(self) -> None:
        self.pending: list[tuple[Any, Job]] = []

    def submit(self, key: Any, job: Job) -> None:
        self.pending.append((key, job))

    def wait(self) -> list[tuple[Any, dict[str, Any]]]:
        key, job = self.pending.pop(0)
        return [(key, execute(job))]

    def close(self) -> None:
        pass


def cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def plan_workers(settings: ExecutorSettings, cells: int | None = None) -> tuple[int, int | None]:
    """(parallel cells, torch threads per cell) for this machine and this many cells to run.

    Local workers share the cores: each gets cores // workers torch threads, so that two
    workers on two cores run one thread each instead of fighting over four.
    """
    cores = cpu_cores()
    cells = cells if cells is not None else 10**6
    if settings.backend == "serial":
        return 1, settings.threads_per_worker
    if settings.backend == "ray":
        return min(settings.workers or 10**6, cells), settings.threads_per_worker or max(1, int(settings.cpus_per_cell))
    workers = max(1, min(settings.workers or cores, cells))
    return workers, settings.threads_per_worker or max(1, cores // workers)
