"""Running a study's cells: check them all first, skip the finished ones, run the rest in parallel.

A cell's result is addressed by its config hash and code hash (`cell.runner.is_done`), and
metrics.json is written last and atomically, so a killed study loses at most the cells in flight
and the next run picks up the rest. At most `workers` cells are in flight at any time; where they
run is the backend's business (`backends`).
"""

from __future__ import annotations

import copy
import dataclasses
import fcntl
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmark.cell.plugins import get_method
from benchmark.cell.runner import CellIdentity, identify, is_done, read_matched, read_twin
from benchmark.core.errors import UserError
from benchmark.core.io import check_writable, read_json, write_json_atomic
from benchmark.core.paths import FAILED_FILE, METRICS_FILE, results_root
from benchmark.core.study_runs import (
    close_parent_run,
    fail_open_cell_runs,
    log_parent_progress,
    open_parent_run,
    reconcile_finished,
)
from benchmark.core.tracking import TrackingSettings, default_tracking_uri, ensure_experiment
from benchmark.study.backends import (
    FORWARDED_ENV,
    Job,
    LocalBackend,
    SerialBackend,
    cpu_cores,
    execute,
    plan_workers,
    store_files,
)
from benchmark.study.cells import Cell
from benchmark.study.profiles import ExecutorSettings
from benchmark.study.progress import Progress, clock
from benchmark.study.ray_backend import RayBackend

__all__ = ["FAILED_FILE", "FORWARDED_ENV", "StudyOutcome", "cpu_cores", "execute", "plan_workers", "run_study"]


@dataclass
class StudyOutcome:
    total: int
    skipped: int = 0
    finished: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0


# The default per-cell time limit: this multiple of the longest finished cell, and at least this many seconds.
TIMEOUT_FACTOR = 10.0
TIMEOUT_FLOOR = 600.0


def _write_failed(folder: Path, record: dict[str, Any], withdraw: bool = False) -> None:
    """failed.json; `withdraw`: also remove a metrics.json the failed worker wrote before it was stopped."""
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(folder / FAILED_FILE, record)
    if withdraw:
        (folder / METRICS_FILE).unlink(missing_ok=True)


def _written(where: Path, write: Any, *args: Any) -> None:
    """Run a write of the study process; a write error (a full disk, a read-only folder) stops the study
    with one line. Cells in flight are stopped and redone on resume; nothing is left half-written."""
    try:
        write(*args)
    except OSError as exc:
        raise UserError(
            f"cannot write {where} ({exc.strerror or exc}); the study stopped there: free space or fix the "
            "folder's permissions and run it again (finished cells are kept)"
        ) from None


class StudyLock:
    """One study at a time per results folder (the lock goes away with the process, even on SIGKILL)."""

    def __init__(self, folder: Path):
        check_writable(folder)  # a read-only results folder is one line, before any cell runs
        self.path = folder / ".study.lock"

    def __enter__(self) -> StudyLock:
        self.handle = open(self.path, "a+")
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.handle.seek(0)
            raise UserError(
                f"another study is running on {self.path.parent} (pid {self.handle.read().strip() or '?'}); "
                f"wait for it or stop it"
            ) from None
        self.handle.truncate(0)
        self.handle.write(str(os.getpid()))
        self.handle.flush()
        return self

    def __exit__(self, *exc: object) -> None:
        self.handle.close()


def _with_twin(cell: Cell) -> Cell:
    """A cell that reads EDropout's result (`cell.after`) with what it needs filled in: a 'matched' cell
    EDropout's measured rate, a `from_twin` method the metrics it names (e.g. `kept_per_group`).

    Resolved here, in the study process, so workers need neither the results folder nor its path.
    """
    if cell.after is None:
        return cell
    cfg = copy.deepcopy(cell.config)
    if cfg.method_args.get("sparsity") == "matched":
        cfg.method_args["sparsity"], cfg.method_args["matched_from"] = read_matched(cell.after, cfg)
    method = get_method(cfg.method)
    if method.from_twin:
        cfg.method_args.update(read_twin(cell.after, cfg, method))
    return dataclasses.replace(cell, config=cfg)


def _check(cell: Cell) -> CellIdentity | None:
    """Resolve and validate a cell now; a cell waiting for another is checked with stand-in values
    (rate 0.5 for 'matched', nothing yet for `from_twin` values)."""
    if cell.after is not None and not (cell.after / METRICS_FILE).is_file():
        stand_in = copy.deepcopy(cell.config)
        if stand_in.method_args.get("sparsity") == "matched":
            stand_in.method_args["sparsity"] = 0.5
        for key in get_method(stand_in.method).from_twin:
            stand_in.method_args[key] = None
        identify(stand_in)
        return None
    return identify(_with_twin(cell).config)


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
    executor = executor or ExecutorSettings()
    tracking = copy.deepcopy(tracking or TrackingSettings())
    with StudyLock(lock_folder or results_root()):
        return _Study(stage, cells, executor, tracking, save_model, study_name or stage, prepared).run()


class _Study:
    """The loop of one `run_study` call: what waits, what runs, what is in flight, and the outcome."""

    def __init__(
        self,
        stage: str,
        cells: list[Cell],
        executor: ExecutorSettings,
        tracking: TrackingSettings,
        save_model: bool,
        study_name: str,
        prepared: Path | None,
    ):
        self.stage, self.cells, self.executor, self.tracking = stage, cells, executor, tracking
        self.save_model, self.study_name, self.prepared = save_model, study_name, prepared
        self.outcome = StudyOutcome(total=len(cells))
        self.waiting: list[Cell] = []  # cells whose EDropout result ('matched', `from_twin`) is not there yet
        self.todo: list[Cell] = []
        self.in_flight: dict[int, Cell] = {}
        self.status: dict[Path, str] = {}  # result folder -> 'finished' | 'failed' (this run)
        self.longest = 0.0  # seconds of the longest cell finished in this run (the default time limit's scale)

    @property
    def remaining(self) -> int:
        return len(self.todo) + len(self.waiting) + len(self.in_flight)

    def run(self) -> StudyOutcome:
        start = time.perf_counter()
        identities = [_check(cell) for cell in self.cells]  # every config is checked before any cell runs
        for cell, ident in zip(self.cells, identities):
            if ident is None:
                self.waiting.append(cell)
            elif is_done(cell.out, ident):
                self.outcome.skipped += 1
            else:
                self.todo.append(_with_twin(cell))
        print(
            f"{self.stage}: {len(self.cells)} cells, {self.outcome.skipped} already done, "
            f"{len(self.todo) + len(self.waiting)} to run",
            file=sys.stderr,
        )
        if not self.todo and not self.waiting:
            self._reconcile()
            return self.outcome
        if self.tracking.enabled:
            ensure_experiment(self.tracking.uri or default_tracking_uri(), self.tracking.experiment)  # before workers
            self.tracking.parent_run_id = open_parent_run(self.tracking, self.study_name)
            self._reconcile()
        workers, threads = plan_workers(self.executor, len(self.todo) + len(self.waiting))
        print(
            f"{self.stage}: backend {self.executor.backend}, {workers} parallel cells, "
            f"{threads or 'default'} torch threads each",
            file=sys.stderr,
        )
        self.progress = Progress(self.stage, len(self.cells), self.outcome.skipped, workers)
        backend = self._backend(workers, threads)
        try:
            self._loop(backend, workers, threads)
        finally:
            self.progress.close()
            backend.close()
        self.outcome.seconds = time.perf_counter() - start
        self._close()
        return self.outcome

    def _reconcile(self) -> None:
        """Results on disk whose MLflow run a kill left unfinished: finish those runs (see reconcile_finished)."""
        ids = set()
        for cell in self.cells:
            metrics = read_json(cell.out / METRICS_FILE)
            if metrics and metrics.get("status") == "finished" and metrics.get("mlflow_run_id"):
                ids.add(metrics["mlflow_run_id"])
        fixed = reconcile_finished(self.tracking, ids)
        if fixed:
            print(
                f"{self.stage}: {len(fixed)} finished cells had unfinished MLflow runs (killed before the "
                "run was closed); marked FINISHED",
                file=sys.stderr,
            )

    def _backend(self, workers: int, threads: int | None) -> Any:
        if self.executor.backend == "ray":
            return RayBackend(self.executor, self.tracking)
        if self.executor.backend == "serial":
            return SerialBackend()
        return LocalBackend(workers, threads)

    def time_limit(self) -> float | None:
        """Seconds the next cell may run: `executor.cell_timeout`, or TIMEOUT_FACTOR x the longest cell
        finished so far in this study (at least TIMEOUT_FLOOR s; none before one has finished)."""
        if self.executor.cell_timeout is not None:
            return self.executor.cell_timeout or None
        return max(TIMEOUT_FLOOR, TIMEOUT_FACTOR * self.longest) if self.longest else None

    def _loop(self, backend: Any, workers: int, threads: int | None) -> None:
        while self.todo or self.waiting or self.in_flight:
            self._release_waiting()
            while self.todo and len(self.in_flight) < workers:
                cell = self.todo.pop(0)
                self.in_flight[id(cell)] = cell
                tracking = dataclasses.replace(self.tracking, operating_point=cell.operating_point)  # its run's tag
                job = Job(cell, tracking, self.save_model, threads, f"[{cell.label}] ", time_limit=self.time_limit())
                backend.submit(id(cell), job)
            if not self.in_flight:
                if self.waiting:  # nothing can make progress: a prerequisite is not part of this study
                    for cell in self.waiting:
                        self.status.setdefault(cell.after, "was not run")
                    continue
                break
            for key, result in backend.wait():
                self._collect(self.in_flight.pop(key), result)

    def _release_waiting(self) -> None:
        """Cells whose prerequisite has finished (or failed) become runnable (or fail)."""
        pending = {c.out for c in self.todo} | {c.out for c in self.in_flight.values()}
        for cell in list(self.waiting):
            state = self.status.get(cell.after)
            if state is None and cell.after not in pending:
                state = "finished" if (cell.after / METRICS_FILE).is_file() else "has no result (not in this study)"
            if state is None:
                continue
            self.waiting.remove(cell)
            if state != "finished":
                result = {
                    "status": "failed",
                    "seconds": 0.0,
                    "error": f"needs the result in {cell.after}, which {state}",
                }
                _written(cell.out / FAILED_FILE, _write_failed, cell.out, {**result, "label": cell.label})
                self.outcome.failed.append((cell.label, result["error"]))
                self.progress.cell_done(cell, result, self.remaining)
                continue
            cell = _with_twin(cell)
            if is_done(cell.out, identify(cell.config)):
                self.outcome.skipped += 1
                top1 = read_json(cell.out / METRICS_FILE)["top1"]
                self.progress.cell_done(cell, {"status": "finished", "seconds": 0.0, "top1": top1}, self.remaining)
            else:
                self.todo.append(cell)

    def _collect(self, cell: Cell, result: dict[str, Any]) -> None:
        if "files" in result:
            _written(cell.out, store_files, cell.out, result.pop("files"))
        if result.get("recorded") is False:  # the worker died, was stopped, or could not write its record
            self._record_failure(cell, result)
        self.status[cell.out] = "finished" if result["status"] == "finished" else "failed"
        if result["status"] == "finished":
            self.outcome.finished += 1
            self.longest = max(self.longest, result.get("seconds", 0.0))
            if self.prepared is not None:
                check_split(json.loads((cell.out / METRICS_FILE).read_text()), self.prepared)
        else:
            self.outcome.failed.append((cell.label, result["error"]))
        self.progress.cell_done(cell, result, self.remaining)
        log_parent_progress(self.tracking, self.progress.done, len(self.outcome.failed))

    def _record_failure(self, cell: Cell, result: dict[str, Any]) -> None:
        """What a worker could not record itself: failed.json (no result stays beside it) and its MLflow run."""
        record = {k: v for k, v in result.items() if k not in ("recorded", "seconds")}
        _written(cell.out / FAILED_FILE, _write_failed, cell.out, record, True)
        if self.tracking.enabled and self.tracking.parent_run_id:
            fail_open_cell_runs(self.tracking, identify(cell.config).config_hash, result["error"])

    def _close(self) -> None:
        if self.tracking.enabled:
            self._reconcile()  # a result written just before its worker was stopped gets its run finished
        outcome = self.outcome
        close_parent_run(
            self.tracking,
            {
                "cells_total": outcome.total,
                "cells_run": outcome.finished,
                "cells_skipped": outcome.skipped,
                "cells_failed": len(outcome.failed),
                "study_seconds": outcome.seconds,
            },
            outcome.failed,
        )
        print(
            f"{self.stage}: {outcome.finished} cells run, {outcome.skipped} already done, {len(outcome.failed)} "
            f"failed in {clock(outcome.seconds)}",
            file=sys.stderr,
        )
        for label, error in outcome.failed:
            print(f"{self.stage}: FAILED {label}: {error}", file=sys.stderr)
