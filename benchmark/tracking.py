"""MLflow tracking: one run per benchmark cell, in `sqlite:///mlflow.db` at the project root by default."""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_EXPERIMENT = "pruning-benchmark"
_PARAM_CHUNK = 100  # MLflow accepts at most 100 params per batch


def default_tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{PROJECT_ROOT / 'mlflow.db'}"


def _artifact_location(uri: str, experiment: str) -> str | None:
    """For a local sqlite store, keep artifacts beside the database instead of in the CWD."""
    if not uri.startswith("sqlite:///"):
        return None
    db = Path(uri[len("sqlite:///"):])
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

    def __init__(self, uri: str, experiment: str, run_name: str, tags: dict[str, str], parent_run_id: str | None = None):
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
            self.client.log_batch(self.run_id, params=items[i:i + _PARAM_CHUNK])

    def log_metrics(self, metrics: dict[str, Any], step: int = 0) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [
            Metric(k, float(v), now, step) for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))
        ]
        if items:
            self.client.log_batch(self.run_id, metrics=items)

    def log_series(self, series: dict[str, list[tuple[int, float]]]) -> None:
        """Whole curves at once (e.g. one point per search generation), in batches MLflow accepts."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(name, float(v), now, step) for name, points in series.items() for step, v in points
                 if math.isfinite(float(v))]
        for i in range(0, len(items), 1000):
            self.client.log_batch(self.run_id, metrics=items[i:i + 1000])

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
