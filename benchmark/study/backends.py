"""Where a study's cells run: a worker executes one job; backends hand jobs out and collect results.

Backends (`executor.backend` in params.yaml):
- `local`: a pool of worker processes on this machine; each worker gets `cores // workers` torch
  threads so that workers do not oversubscribe the cores.
- `serial`: every cell in this process, one after the other (debugging).
- `ray`: each cell is a Ray task with its own CPU/GPU request, on the cluster at `RAY_ADDRESS`
  (or a local Ray instance when unset). Results come back to the driver, which writes them, so
  workers need no shared disk; MLflow must then be a tracking server (`MLFLOW_TRACKING_URI`).
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmark.cell.runner import run_cell
from benchmark.cell.training import ProgressStyle
from benchmark.core.errors import UserError
from benchmark.core.io import write_json_atomic
from benchmark.core.paths import FAILED_FILE, METRICS_FILE
from benchmark.core.tracking import TrackingSettings, default_tracking_uri
from benchmark.study.cells import Cell
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
        metrics = run_cell(job.cell.config, out, tracking=job.tracking, progress=style, save_model=job.save_model)
    except Exception as exc:  # noqa: BLE001 - the study goes on; the failure is recorded beside the cell
        record = _failure_record(job.cell, exc)
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out / FAILED_FILE, record)
        return {**record, "seconds": time.perf_counter() - start}
    (out / FAILED_FILE).unlink(missing_ok=True)
    return {"status": "finished", "top1": metrics["top1"], "seconds": time.perf_counter() - start}


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


def _execute_collect(job: Job) -> dict[str, Any]:
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


class LocalBackend:
    def __init__(self, workers: int, threads: int | None):
        self.workers, self.threads = workers, threads
        self.pool = self._new_pool()
        self.futures: dict[cf.Future, Any] = {}

    def _new_pool(self) -> cf.ProcessPoolExecutor:
        # forkserver: workers fork from a clean server process that has imported the harness (torch,
        # timm) but run nothing, so they start in a fraction of a second; forking this process,
        # which may already have run torch, would be unsafe.
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["benchmark.study.backends"])
        return cf.ProcessPoolExecutor(
            self.workers, mp_context=context, initializer=_worker_init, initargs=(self.threads,)
        )

    def submit(self, key: Any, job: Job) -> None:
        self.futures[self.pool.submit(execute, job)] = key

    def wait(self) -> list[tuple[Any, dict[str, Any]]]:
        done, _ = cf.wait(list(self.futures), return_when=cf.FIRST_COMPLETED)
        results, broken = [], False
        for future in done:
            key = self.futures.pop(future)
            try:
                results.append((key, future.result()))
            except cf.process.BrokenProcessPool:
                broken = True
                results.append(
                    (key, {"status": "failed", "error": "the worker process died (out of memory?)", "seconds": 0.0})
                )
        if broken:  # a dead worker breaks the whole pool: start a new one for the remaining cells
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = self._new_pool()
        return results

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


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


class RayBackend:
    def __init__(self, settings: ExecutorSettings, tracking: TrackingSettings):
        try:
            import ray
        except ImportError:
            raise UserError("executor backend 'ray' needs the ray package: pip install 'ray[default]'") from None
        address = os.environ.get("RAY_ADDRESS")
        uri = tracking.uri or default_tracking_uri()
        if address and address != "local" and tracking.enabled and uri.startswith(("sqlite:", "file:")):
            raise UserError(
                f"executor 'ray' on the cluster at RAY_ADDRESS={address} needs MLflow on a tracking "
                f"server, not {uri}: set MLFLOW_TRACKING_URI=http://<host>:5000"
            )
        self.ray = ray
        if not ray.is_initialized():
            ray.init(
                address=address or None,
                include_dashboard=False,
                log_to_driver=True,
                logging_level="WARNING",
                configure_logging=True,
            )
        self.task = ray.remote(num_cpus=settings.cpus_per_cell, num_gpus=settings.gpus_per_cell, max_retries=0)(
            _execute_collect
        )
        self.refs: dict[Any, Any] = {}

    def submit(self, key: Any, job: Job) -> None:
        self.refs[self.task.remote(job)] = key

    def wait(self) -> list[tuple[Any, dict[str, Any]]]:
        done, _ = self.ray.wait(list(self.refs), num_returns=1)
        results = []
        for ref in done:
            key = self.refs.pop(ref)
            try:
                results.append((key, self.ray.get(ref)))
            except Exception as exc:  # noqa: BLE001 - the task or its node died
                results.append(
                    (key, {"status": "failed", "error": f"ray task failed: {exc}".splitlines()[0], "seconds": 0.0})
                )
        return results

    def close(self) -> None:
        self.ray.shutdown()


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
