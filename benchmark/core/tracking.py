"""MLflow tracking: one child run per benchmark cell under one parent run per study, in
`sqlite:///mlflow.db` at the project root by default (`MLFLOW_TRACKING_URI` logs elsewhere).

Nothing here changes what a cell computes, so editing it never re-runs a cell."""

from __future__ import annotations

import hashlib
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from benchmark.core.paths import PROJECT_ROOT

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

DEFAULT_EXPERIMENT = "pruning-benchmark"
_PARAM_CHUNK = 100  # MLflow accepts at most 100 params per batch


@dataclass
class TrackingSettings:
    enabled: bool = True
    uri: str | None = None  # None: MLFLOW_TRACKING_URI or sqlite:///<project>/mlflow.db
    experiment: str = DEFAULT_EXPERIMENT
    parent_run_id: str | None = None


class CellTracker(Protocol):
    """What a cell logs to: an MLflow run (`Tracker`) or nothing (`NullTracker`, with --no-track)."""

    run_id: str | None

    def log_params(self, params: dict[str, Any]) -> None: ...
    def log_metrics(self, metrics: dict[str, Any], step: int = 0) -> None: ...
    def log_series(self, series: dict[str, list[tuple[int, float]]]) -> None: ...
    def log_artifact(self, path: str | Path) -> None: ...
    def set_tag(self, key: str, value: str) -> None: ...
    def finish(self, status: str = "FINISHED") -> None: ...


def default_tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{PROJECT_ROOT / 'mlflow.db'}"


def _artifact_location(uri: str, experiment: str) -> str | None:
    """For a local sqlite store, keep artifacts beside the database instead of in the CWD."""
    if not uri.startswith("sqlite:///"):
        return None
    db = Path(uri[len("sqlite:///") :])
    return (db.parent / "mlartifacts" / experiment).resolve().as_uri()


def _quiet_migrations() -> None:
    for name in ("alembic", "mlflow.store.db.utils", "mlflow.store.sql_alchemy"):
        logging.getLogger(name).setLevel(logging.WARNING)


def ensure_experiment(uri: str, experiment: str) -> str:
    """Create the experiment if needed (call once before parallel workers start); returns its id."""
    _quiet_migrations()
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(experiment, artifact_location=_artifact_location(uri, experiment))
    except MlflowException:  # another process created it in between
        return client.get_experiment_by_name(experiment).experiment_id


class Tracker:
    """One MLflow run. Created only once the inputs are known to be good, so bad input leaves no run."""

    def __init__(
        self, uri: str, experiment: str, run_name: str, tags: dict[str, str], parent_run_id: str | None = None
    ):
        _quiet_migrations()
        from mlflow.tracking import MlflowClient

        self.uri = uri
        self.client = MlflowClient(uri)
        experiment_id = ensure_experiment(uri, experiment)
        if parent_run_id:
            tags = {**tags, "mlflow.parentRunId": parent_run_id}
        self.run_id = self.client.create_run(experiment_id, run_name=run_name, tags=tags).info.run_id

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in sorted(params.items())]
        for i in range(0, len(items), _PARAM_CHUNK):
            self.client.log_batch(self.run_id, params=items[i : i + _PARAM_CHUNK])

    def log_metrics(self, metrics: dict[str, Any], step: int = 0) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [
            Metric(k, float(v), now, step)
            for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))
        ]
        if items:
            self.client.log_batch(self.run_id, metrics=items)

    def log_series(self, series: dict[str, list[tuple[int, float]]]) -> None:
        """Whole curves at once (e.g. one point per search generation), in batches MLflow accepts."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [
            Metric(name, float(v), now, step)
            for name, points in series.items()
            for step, v in points
            if math.isfinite(float(v))
        ]
        for i in range(0, len(items), 1000):
            self.client.log_batch(self.run_id, metrics=items[i : i + 1000])

    def log_artifact(self, path: str | Path) -> None:
        self.client.log_artifact(self.run_id, str(path))

    def set_tag(self, key: str, value: str) -> None:
        self.client.set_tag(self.run_id, key, value)

    def finish(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status=status)


class NullTracker:
    """Used with `--no-track`: the same calls, nothing recorded."""

    run_id = None

    def log_params(self, params: dict[str, Any]) -> None: ...
    def log_metrics(self, metrics: dict[str, Any], step: int = 0) -> None: ...
    def log_series(self, series: dict[str, list[tuple[int, float]]]) -> None: ...
    def log_artifact(self, path: str | Path) -> None: ...
    def set_tag(self, key: str, value: str) -> None: ...
    def finish(self, status: str = "FINISHED") -> None: ...


def open_cell_tracker(settings: TrackingSettings, run_name: str, tags: dict[str, str]) -> CellTracker:
    """The run a cell logs to: a child of the study's run when there is one; nothing with tracking off."""
    if not settings.enabled:
        return NullTracker()
    return Tracker(settings.uri or default_tracking_uri(), settings.experiment, run_name, tags, settings.parent_run_id)


# -- the study's parent run ------------------------------------------------------------------------


def study_key(name: str) -> str:
    """Identifies one study (profile) of one checkout, so a resumed study finds its parent run."""
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
    found = client.search_runs(
        [experiment_id], f"tags.study_key = '{key}'", max_results=1, order_by=["attributes.start_time DESC"]
    )
    if found:
        run_id = found[0].info.run_id
        client.update_run(run_id, status="RUNNING")
        stale = client.search_runs(
            [experiment_id],
            f"tags.mlflow.parentRunId = '{run_id}' and attributes.status = 'RUNNING'",
            max_results=10000,
        )
        for run in stale:  # in flight when an earlier run of this study was killed
            client.set_tag(run.info.run_id, "error", "interrupted: the study process was killed")
            client.set_terminated(run.info.run_id, status="KILLED")
    else:
        run_id = client.create_run(
            experiment_id, run_name=f"study-{name}", tags={"study_key": key, "study": name, "kind": "study"}
        ).info.run_id
    return run_id


def reconcile_finished(tracking: TrackingSettings, run_ids: set[str]) -> list[str]:
    """Mark FINISHED the runs of cells whose result is complete on disk but whose run is not.

    A kill between the atomic write of metrics.json and the run's end leaves the run RUNNING (or KILLED,
    once a resumed study closes stale children) although the result is there and will never be recomputed;
    results and MLflow must agree, so such runs are finished with a `recovered` tag. Returns their ids.
    """
    if not tracking.enabled or not run_ids:
        return []
    from mlflow.tracking import MlflowClient

    uri = tracking.uri or default_tracking_uri()
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(tracking.experiment)
    if experiment is None:
        return []
    open_runs = client.search_runs([experiment.experiment_id], "attributes.status != 'FINISHED'", max_results=50000)
    fixed = [run.info.run_id for run in open_runs if run.info.run_id in run_ids]
    for run_id in fixed:
        client.set_tag(run_id, "recovered", "the result was complete on disk when the process was killed")
        client.set_terminated(run_id, status="FINISHED")
    return fixed


def _client(tracking: TrackingSettings) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking.uri or default_tracking_uri())


def log_parent_progress(tracking: TrackingSettings, done: int, failed: int) -> None:
    if tracking.parent_run_id is None:
        return
    _client(tracking).log_metric(tracking.parent_run_id, "cells_failed", failed, step=done)


def close_parent_run(tracking: TrackingSettings, counts: dict[str, float], failed: list[tuple[str, str]]) -> None:
    """Final counts (`cells_total`, `cells_run`, ...) and the failed cells on the parent run, then FINISHED."""
    if tracking.parent_run_id is None:
        return
    client = _client(tracking)
    run_id = tracking.parent_run_id
    for name, value in counts.items():
        client.log_metric(run_id, name, value)
    if failed:
        client.set_tag(run_id, "failed_cells", "; ".join(f"{label}: {err}" for label, err in failed)[:5000])
    client.set_terminated(run_id, status="FINISHED")
