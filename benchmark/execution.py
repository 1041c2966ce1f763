"""Running a study's cells: check them all first, skip the finished ones, run the rest in parallel.

Backends (`executor.backend` in params.yaml):
- `local`: a pool of worker processes on this machine; each worker gets `cores // workers` torch
  threads so that workers do not oversubscribe the cores.
- `serial`: every cell in this process, one after the other (debugging).
- `ray`: each cell is a Ray task with its own CPU/GPU request, on the cluster at `RAY_ADDRESS`
  (or a local Ray instance when unset). Results come back to the driver, which writes them, so
  workers need no shared disk; MLflow must then be a tracking server (`MLFLOW_TRACKING_URI`).

A cell's result is addressed by its config hash and code hash (`runner.is_done`), and
metrics.json is written last and atomically, so a killed study loses at most the cells in flight
and the next run picks up the rest. At most `workers` cells are in flight at any time.
"""

from __future__ import annotations

import concurrent.futures as cf
import copy
import dataclasses
import fcntl
import hashlib
import json
import multiprocessing
import os
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmark.errors import UserError
from benchmark.runner import (
    CellIdentity,
    TrackingSettings,
    identify,
    is_done,
    read_matched,
    run_cell,
    write_json_atomic,
)
from benchmark.study import Cell, ExecutorSettings
from benchmark.tracking import default_tracking_uri, ensure_experiment

FAILED_FILE = "failed.json"


# ----------------------------------------------------------------------------------------------
# What one worker does with one cell


# Settings a worker must see as they are now in the study process. Pool workers fork from a
# server started earlier (and Ray workers live elsewhere), so they are sent with every job.
FORWARDED_ENV = ("PRUNING_BENCH_PLUGINS", "BENCHMARK_RESULTS", "BENCHMARK_CHECKPOINTS", "MLFLOW_TRACKING_URI",
                 "MLFLOW_DISABLE_TELEMETRY")


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
    return {"status": "failed", "error": message[:2000], "traceback": traceback.format_exc()[-4000:],
            "label": cell.label, "failed_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def execute(job: Job, out: Path | None = None) -> dict[str, Any]:
    """Run one cell into `out` (default: the cell's folder). Never raises for a failing cell."""
    from benchmark import training

    out = Path(out or job.cell.out)
    _apply_env(job.env)
    _set_threads(job.threads)
    training.BARS, training.LOG_PREFIX = False, job.progress_prefix
    start = time.perf_counter()
    try:
        metrics = run_cell(job.cell.config, out, tracking=job.tracking, progress=True, save_model=job.save_model)
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


def _store_files(out: Path, files: dict[str, bytes]) -> None:
    """Write the files a remote cell produced; metrics.json last, so a half-copied cell is not done."""
    out.mkdir(parents=True, exist_ok=True)
    for name in sorted(files, key=lambda n: n == "metrics.json"):
        tmp = out / f".{name}.tmp"
        tmp.write_bytes(files[name])
        os.replace(tmp, out / name)
    if "metrics.json" in files:
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
        context.set_forkserver_preload(["benchmark.execution"])
        return cf.ProcessPoolExecutor(self.workers, mp_context=context,
                                      initializer=_worker_init, initargs=(self.threads,))

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
                results.append((key, {"status": "failed", "error": "the worker process died (out of memory?)",
                                      "seconds": 0.0}))
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
        from benchmark import training

        training.BARS, training.LOG_PREFIX = True, ""


class RayBackend:
    def __init__(self, settings: ExecutorSettings, tracking: TrackingSettings):
        try:
            import ray
        except ImportError:
            raise UserError("executor backend 'ray' needs the ray package: pip install 'ray[default]'") from None
        address = os.environ.get("RAY_ADDRESS")
        uri = tracking.uri or default_tracking_uri()
        if address and address != "local" and tracking.enabled and uri.startswith(("sqlite:", "file:")):
            raise UserError(f"executor 'ray' on the cluster at RAY_ADDRESS={address} needs MLflow on a tracking "
                            f"server, not {uri}: set MLFLOW_TRACKING_URI=http://<host>:5000")
        self.ray = ray
        if not ray.is_initialized():
            ray.init(address=address or None, include_dashboard=False, log_to_driver=True,
                     logging_level="WARNING", configure_logging=True)
        self.task = ray.remote(num_cpus=settings.cpus_per_cell, num_gpus=settings.gpus_per_cell,
                               max_retries=0)(_execute_collect)
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
                results.append((key, {"status": "failed", "error": f"ray task failed: {exc}".splitlines()[0],
                                      "seconds": 0.0}))
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


# ----------------------------------------------------------------------------------------------
# MLflow: one parent run per study, one child run per cell


def study_key(name: str) -> str:
    from benchmark.runner import PROJECT_ROOT

    return hashlib.sha256(f"{PROJECT_ROOT}|{name}".encode()).hexdigest()[:16]


def open_parent_run(tracking: TrackingSettings, name: str) -> str | None:
    """Find (or create) the study's parent run and mark it running; close children a kill left open."""
    if not tracking.enabled:
        return None
    from mlflow.tracking import MlflowClient

    uri = tracking.uri or default_tracking_uri()
    experiment_id = ensure_experiment(uri, tracking.experiment)
    client = MlflowClient(uri)
    key = study_key(name)
    found = client.search_runs([experiment_id], f"tags.study_key = '{key}'", max_results=1,
                               order_by=["attributes.start_time DESC"])
    if found:
        run_id = found[0].info.run_id
        client.update_run(run_id, status="RUNNING")
        stale = client.search_runs([experiment_id], f"tags.mlflow.parentRunId = '{run_id}' and "
                                                    f"attributes.status = 'RUNNING'", max_results=10000)
        for run in stale:  # in flight when an earlier run of this study was killed
            client.set_tag(run.info.run_id, "error", "interrupted: the study process was killed")
            client.set_terminated(run.info.run_id, status="KILLED")
    else:
        run_id = client.create_run(experiment_id, run_name=f"study-{name}",
                                   tags={"study_key": key, "study": name, "kind": "study"}).info.run_id
    return run_id


# ----------------------------------------------------------------------------------------------
# The study loop


@dataclass
class StudyOutcome:
    total: int
    skipped: int = 0
    finished: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0


class Progress:
    """Study-level progress: a bar on a terminal, and one line per finished cell everywhere."""

    def __init__(self, stage: str, total: int, done: int, workers: int):
        from tqdm import tqdm

        self.stage, self.total, self.done, self.workers = stage, total, done, workers
        self.start = time.perf_counter()
        self.durations: list[float] = []
        self.bar = tqdm(total=total, initial=done, desc=f"{stage} cells", unit="cell", file=sys.stderr,
                        disable=None, position=0, dynamic_ncols=True)

    def eta(self, remaining: int) -> float | None:
        if not self.durations:
            return None
        return sum(self.durations) / len(self.durations) * remaining / min(self.workers, max(1, remaining))

    def cell_done(self, cell: Cell, result: dict[str, Any], remaining: int) -> None:
        self.done += 1
        self.durations.append(result.get("seconds", 0.0))
        self.bar.update(1)
        eta = self.eta(remaining)
        outcome = (f"top-1 {result['top1']:.2f}%" if result["status"] == "finished"
                   else f"FAILED: {result['error']}")
        line = (f"{self.stage} [{self.done}/{self.total}] {cell.label}: {outcome} ({result.get('seconds', 0):.0f}s)"
                f" | elapsed {_clock(time.perf_counter() - self.start)}"
                f" ETA {_clock(eta) if eta is not None else '?'}")
        self.bar.write(line, file=sys.stderr)

    def close(self) -> None:
        self.bar.close()


def _clock(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


class StudyLock:
    """One study at a time per results folder (the lock goes away with the process, even on SIGKILL)."""

    def __init__(self, folder: Path):
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / ".study.lock"

    def __enter__(self) -> StudyLock:
        self.handle = open(self.path, "a+")
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.handle.seek(0)
            raise UserError(f"another study is running on {self.path.parent} (pid {self.handle.read().strip() or '?'}); "
                            f"wait for it or stop it") from None
        self.handle.truncate(0)
        self.handle.write(str(os.getpid()))
        self.handle.flush()
        return self

    def __exit__(self, *exc: object) -> None:
        self.handle.close()


def _with_matched_rate(cell: Cell) -> Cell:
    """A 'matched' cell with EDropout's measured rate filled in from its result folder (`cell.after`).

    Resolved here, in the study process, so workers need neither the results folder nor its path.
    """
    if cell.after is None or cell.config.method_args.get("sparsity") != "matched":
        return cell
    cfg = copy.deepcopy(cell.config)
    cfg.method_args["sparsity"], cfg.method_args["matched_from"] = read_matched(cell.after, cfg)
    return dataclasses.replace(cell, config=cfg)


def _check(cell: Cell) -> CellIdentity | None:
    """Resolve and validate a cell now; a cell waiting for another is checked with a stand-in rate."""
    if cell.after is not None and not (cell.after / "metrics.json").is_file():
        stand_in = copy.deepcopy(cell.config)
        stand_in.method_args["sparsity"] = 0.5
        identify(stand_in)
        return None
    return identify(_with_matched_rate(cell).config)


def check_split(metrics: dict, prepared: Path) -> None:
    """The split a cell trained on must be the one the `prepare` stage materialised."""
    record_path = prepared / metrics["dataset"] / f"seed{metrics['seed']}.json"
    if not record_path.is_file():
        return
    expected = json.loads(record_path.read_text())["split_hash"]
    if metrics["split_hash"] != expected:
        raise UserError(
            f"split of {metrics['dataset']} seed {metrics['seed']} is {metrics['split_hash']}, "
            f"but {record_path} records {expected}: re-run the prepare stage"
        )


def run_study(
    stage: str,
    cells: list[Cell],
    executor: ExecutorSettings | None = None,
    tracking: TrackingSettings | None = None,
    save_model: bool = False,
    study_name: str | None = None,
    prepared: Path | None = None,
    lock_folder: Path | None = None,
) -> StudyOutcome:
    """Run every cell that is not finished with the same config and code. Cells that fail are
    recorded (failed.json beside the cell, a FAILED MLflow run) and the study goes on.

    `prepared`: the prepare stage's folder; a finished cell whose split differs from it stops the study.
    `lock_folder`: one study at a time may write there (default: the results root).
    """
    from benchmark.runner import results_root

    executor = executor or ExecutorSettings()
    tracking = copy.deepcopy(tracking or TrackingSettings())
    with StudyLock(lock_folder or results_root()):
        return _run(stage, cells, executor, tracking, save_model, study_name or stage, prepared)


def _run(stage: str, cells: list[Cell], executor: ExecutorSettings, tracking: TrackingSettings,
         save_model: bool, study_name: str, prepared: Path | None) -> StudyOutcome:
    start = time.perf_counter()
    identities = [_check(cell) for cell in cells]  # every config is checked before any cell runs
    outcome = StudyOutcome(total=len(cells))
    waiting: list[Cell] = []
    todo: list[Cell] = []
    for cell, ident in zip(cells, identities):
        if ident is None:
            waiting.append(cell)
        elif is_done(cell.out, ident):
            outcome.skipped += 1
        else:
            todo.append(_with_matched_rate(cell))
    print(f"{stage}: {len(cells)} cells, {outcome.skipped} already done, {len(todo) + len(waiting)} to run",
          file=sys.stderr)
    if not todo and not waiting:
        return outcome
    if tracking.enabled:
        ensure_experiment(tracking.uri or default_tracking_uri(), tracking.experiment)  # once, before workers
        tracking.parent_run_id = open_parent_run(tracking, study_name)
    workers, threads = plan_workers(executor, len(todo) + len(waiting))
    print(f"{stage}: backend {executor.backend}, {workers} parallel cells, "
          f"{threads or 'default'} torch threads each", file=sys.stderr)
    backend: Any
    if executor.backend == "ray":
        backend = RayBackend(executor, tracking)
    elif executor.backend == "serial" or workers == 1:
        backend = SerialBackend()
    else:
        backend = LocalBackend(workers, threads)
    progress = Progress(stage, len(cells), outcome.skipped, workers)
    in_flight: dict[int, Cell] = {}
    status: dict[Path, str] = {}
    try:
        while todo or waiting or in_flight:
            # cells whose prerequisite has finished (or failed) become runnable
            for cell in list(waiting):
                state = status.get(cell.after)
                if state is None and cell.after not in {c.out for c in todo} | {c.out for c in in_flight.values()}:
                    state = "finished" if (cell.after / "metrics.json").is_file() else "has no result (not in this study)"
                if state is None:
                    continue
                waiting.remove(cell)
                if state != "finished":
                    result = {"status": "failed", "seconds": 0.0,
                              "error": f"needs the result in {cell.after}, which {state}"}
                    cell.out.mkdir(parents=True, exist_ok=True)
                    write_json_atomic(cell.out / FAILED_FILE, {**result, "label": cell.label})
                    outcome.failed.append((cell.label, result["error"]))
                    progress.cell_done(cell, result, len(todo) + len(waiting) + len(in_flight))
                    continue
                cell = _with_matched_rate(cell)
                if is_done(cell.out, identify(cell.config)):
                    outcome.skipped += 1
                    progress.cell_done(cell, {"status": "finished", "seconds": 0.0,
                                              "top1": json.loads((cell.out / "metrics.json").read_text())["top1"]},
                                       len(todo) + len(waiting) + len(in_flight))
                else:
                    todo.append(cell)
            while todo and len(in_flight) < workers:
                cell = todo.pop(0)
                key = id(cell)
                in_flight[key] = cell
                backend.submit(key, Job(cell, tracking, save_model, threads, f"[{cell.label}] "))
            if not in_flight:
                if waiting:  # nothing can make progress: a prerequisite is not part of this study
                    for cell in waiting:
                        status.setdefault(cell.after, "was not run")
                    continue
                break
            for key, result in backend.wait():
                cell = in_flight.pop(key)
                if "files" in result:
                    _store_files(cell.out, result.pop("files"))
                status[cell.out] = "finished" if result["status"] == "finished" else "failed"
                if result["status"] == "finished":
                    outcome.finished += 1
                    if prepared is not None:
                        check_split(json.loads((cell.out / "metrics.json").read_text()), prepared)
                else:
                    outcome.failed.append((cell.label, result["error"]))
                progress.cell_done(cell, result, len(todo) + len(waiting) + len(in_flight))
                _log_parent(tracking, progress.done, outcome)
    finally:
        progress.close()
        backend.close()
    outcome.seconds = time.perf_counter() - start
    _close_parent(tracking, outcome)
    print(f"{stage}: {outcome.finished} cells run, {outcome.skipped} already done, {len(outcome.failed)} failed "
          f"in {_clock(outcome.seconds)}", file=sys.stderr)
    for label, error in outcome.failed:
        print(f"{stage}: FAILED {label}: {error}", file=sys.stderr)
    return outcome


def _client(tracking: TrackingSettings) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking.uri or default_tracking_uri())


def _log_parent(tracking: TrackingSettings, done: int, outcome: StudyOutcome) -> None:
    if tracking.parent_run_id is None:
        return
    _client(tracking).log_metric(tracking.parent_run_id, "cells_failed", len(outcome.failed), step=done)


def _close_parent(tracking: TrackingSettings, outcome: StudyOutcome) -> None:
    if tracking.parent_run_id is None:
        return
    client = _client(tracking)
    run_id = tracking.parent_run_id
    for name, value in (("cells_total", outcome.total), ("cells_run", outcome.finished),
                        ("cells_skipped", outcome.skipped), ("cells_failed", len(outcome.failed)),
                        ("study_seconds", outcome.seconds)):
        client.log_metric(run_id, name, value)
    if outcome.failed:
        client.set_tag(run_id, "failed_cells", "; ".join(f"{label}: {err}" for label, err in outcome.failed)[:5000])
    client.set_terminated(run_id, status="FINISHED")
