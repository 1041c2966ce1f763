"""The `ray` backend: each cell is a Ray task with its own CPU/GPU request, on the cluster at
`RAY_ADDRESS` (or a local Ray instance when unset). Results come back to the driver, which writes
them, so workers need no shared disk; MLflow must then be a tracking server. A task past its hard
time limit is cancelled and recorded as timed out."""

from __future__ import annotations

import os
import time
from typing import Any

from benchmark.core.errors import UserError
from benchmark.core.tracking import TrackingSettings, default_tracking_uri
from benchmark.study.backends import Job, driver_record, execute_collect, hard_limit
from benchmark.study.profiles import ExecutorSettings


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
            execute_collect
        )
        self.refs: dict[Any, tuple[Any, Job, float]] = {}  # ref -> (key, job, start)
        self.overdue: set[Any] = set()

    def submit(self, key: Any, job: Job) -> None:
        self.refs[self.task.remote(job)] = (key, job, time.monotonic())

    def wait(self) -> list[tuple[Any, dict[str, Any]]]:
        while True:
            done, _ = self.ray.wait(list(self.refs), num_returns=1, timeout=1.0)
            if done:
                break
            for ref, (_, job, started) in self.refs.items():
                limit = hard_limit(job)
                if limit is not None and ref not in self.overdue and time.monotonic() - started > limit:
                    self.overdue.add(ref)
                    self.ray.cancel(ref, force=True)
        results = []
        for ref in done:
            key, job, started = self.refs.pop(ref)
            seconds = time.monotonic() - started
            try:
                results.append((key, self.ray.get(ref)))
            except Exception as exc:  # noqa: BLE001 - the task or its node died, or it was stopped
                if ref in self.overdue:
                    error = f"timed out after {job.time_limit:g} s"
                else:
                    error = f"the ray task failed: {type(exc).__name__}: {exc}".splitlines()[0]
                results.append((key, {**driver_record(job.cell, error), "seconds": seconds}))
            self.overdue.discard(ref)
        return results

    def close(self) -> None:
        self.ray.shutdown()
