"""MLflow tracking: one child run per benchmark cell under one parent run per study, in
`sqlite:///mlflow.db` at the project root by default (`MLFLOW_TRACKING_URI` logs elsewhere).

Nothing here changes what a cell computes, so editing it never re-runs a cell."""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from benchmark.core.paths import PROJECT_ROOT

if TYPE_CHECKING:
    from benchmark.core.config import RunConfig

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

DEFAULT_EXPERIMENT = "pruning-benchmark"
PARAM_CHUNK = 100  # MLflow accepts at most 100 params per batch
DATASET_ATTEMPTS = 5  # log_inputs retries after a concurrent cell inserted the same dataset first
# Metric sections: the MLflow UI groups a run's charts by the part of the name before '/'.
SECTIONS = ("train", "val", "search", "final")


@dataclass
class TrackingSettings:
    enabled: bool = True
    uri: str | None = None  # None: MLFLOW_TRACKING_URI or sqlite:///<project>/mlflow.db
    experiment: str = DEFAULT_EXPERIMENT
    parent_run_id: str | None = None
    # the study's label of the cell's operating point ('0.5', 'matched@p_init=0.3'); None: derived from the config
    operating_point: str | None = None
    # MLflow's system metrics (CPU, memory, ...) every `system_metrics_interval` s; also on with
    # MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING=true, MLflow's own switch
    system_metrics: bool = False
    system_metrics_interval: float = 10.0
    log_model: bool = False  # the final network as an MLflow model with its signature (`run --save-model`)


class CellTracker(Protocol):
    """What a cell logs to: an MLflow run (`Tracker`) or nothing (`NullTracker`, with --no-track)."""

    run_id: str | None

    def log_params(self, params: dict[str, Any]) -> None: ...
    def log_metrics(self, metrics: dict[str, Any], step: int = 0, section: str | None = None) -> None: ...
    def log_series(self, series: dict[str, list[tuple[int, float]]]) -> None: ...
    def log_dataset(self, name: str, split_hash: str, sizes: dict[str, int]) -> None: ...
    def log_model(self, model: Any, inputs: Any) -> None: ...
    def log_artifact(self, path: str | Path) -> None: ...
    def set_tag(self, key: str, value: str) -> None: ...
    def finish(self, status: str = "FINISHED") -> None: ...


def metric_key(name: str, section: str | None = None) -> str:
    """The name a metric gets in MLflow, `<section>/<name>`, so the UI shows one section per kind of curve.

    With `section` given (e.g. 'final' for a cell's result) it is used; otherwise per-epoch and per-generation
    names say theirs: `val_top1` -> `val/top1`, `search_best_energy` -> `search/best_energy`, and the rest of
    an epoch's record (`loss`, `train_top1`, `lr`, a method's own epoch values) -> `train/...`."""
    if "/" in name:
        return name
    if section is None:
        section = next((s for s in ("val", "search", "train") if name.startswith(f"{s}_")), "train")
    if section not in SECTIONS:
        raise ValueError(f"unknown metric section {section!r}; valid: {', '.join(SECTIONS)}")
    return f"{section}/{name.removeprefix(f'{section}_')}"


def _portable(value: Any) -> Any:
    """A param value without absolute paths: a path inside the project or the results root, relative to it;
    another absolute path, its last four parts (what identifies a result folder), marked with '.../'."""
    if not isinstance(value, str) or not value.startswith("/"):
        return value
    from benchmark.core.paths import results_root

    path, rest = (value.split(" (", 1) + [""])[:2]
    for root in (results_root(), PROJECT_ROOT):
        try:
            short = str(Path(path).resolve().relative_to(Path(root).resolve()))
            break
        except ValueError:
            continue
    else:
        short = ".../" + "/".join(Path(path).parts[-4:])
    return f"{short} ({rest}" if rest else short


def flat_params(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A config as MLflow params, the same way for every method: nested keys joined with '.', an empty
    mapping (e.g. a method without `method_args`) logs nothing, and no value is an absolute path."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat_params(value, f"{name}."))
        else:
            out[name] = _portable(value)
    return out


# -- what identifies a cell's run --------------------------------------------------------------------------


def operating_point_of(cfg: RunConfig) -> str:
    """The cell's operating point as the study labels it: a rate ('0.5'), 'matched', or the method's own
    rate (the method's name, e.g. 'dense', 'edropout')."""
    args = cfg.method_args
    if "matched_from" in args or args.get("sparsity") == "matched":
        return "matched"
    if "sparsity" in args:
        return f"{float(args['sparsity']):g}"
    return cfg.method


def cell_run_identity(cell: Any, operating_point: str | None = None) -> tuple[str, dict]:
    """The run name and tags of a cell (`cell`: its resolved `config`, method `spec` and `config_hash`):
    every coordinate that tells it from another cell of a study.

    The name, `<method>-<arch>-<dataset>-s<seed>-<point>[-<EDropout point>][-<variant>]-<config hash[:8]>`,
    is unique per cell (the config hash tells what-ifs apart). The tags are what a search or the UI's "group
    by" uses; `edropout_point` is on EDropout's cells, its controls and the baselines matched to it, so one
    filter (`tags.edropout_point = 'p_init=0.5'`) gives everything compared at that rate."""
    cfg, spec, config_hash = cell.config, cell.method, cell.config_hash
    args = cfg.method_args
    point = operating_point or operating_point_of(cfg)
    base, _, edropout_point = point.partition("@")
    if not edropout_point and (base == "matched" or "edropout" in (cfg.method, spec.control_of)):
        edropout_point = f"p_init={float(args['p_init']):g}" if "p_init" in args else "default"
    variant = str(args.get("variant") or "")
    tags = {
        "kind": "cell",
        "method": cfg.method,
        "arch": cfg.model.arch,
        "dataset": cfg.data.name,
        "seed": str(cfg.seed),
        "operating_point": point,
        "budget": str(cfg.train.budget),
        "granularity": spec.granularity,
        "config_hash": config_hash,
    }
    if edropout_point:
        tags["edropout_point"] = edropout_point
    if variant:
        tags["variant"] = variant
    parts = [cfg.method, cfg.model.arch, cfg.data.name, f"s{cfg.seed}", base if base != cfg.method else "own"]
    parts += [edropout_point] if edropout_point and edropout_point != "default" else []
    parts += [variant] if variant else []
    return "-".join([*parts, config_hash[:8]]), tags


def context_tags() -> dict[str, str]:
    """MLflow's standard context tags, as the fluent API sets them (`mlflow.user`, `mlflow.source.name`,
    `mlflow.source.type`, `mlflow.source.git.commit`), with the source relative to the project."""
    from mlflow.tracking.context.registry import resolve_tags
    from mlflow.utils.mlflow_tags import MLFLOW_GIT_COMMIT, MLFLOW_SOURCE_NAME

    from benchmark.core.provenance import git_commit

    tags = dict(resolve_tags())
    source = sys.argv[0] if sys.argv and sys.argv[0] not in ("", "-c") else tags.get(MLFLOW_SOURCE_NAME, "")
    if source.startswith("/"):
        source = _portable(source)
    if source.endswith("benchmark/__main__.py"):
        source = "python -m benchmark"
    tags[MLFLOW_SOURCE_NAME] = source or "python"
    commit = git_commit()
    if commit:
        tags[MLFLOW_GIT_COMMIT] = commit
    return tags


def default_tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{PROJECT_ROOT / 'mlflow.db'}"


def _artifact_location(uri: str, experiment: str) -> str | None:
    """For a local sqlite store, keep artifacts beside the database instead of in the CWD."""
    if not uri.startswith("sqlite:///"):
        return None
    db = Path(uri[len("sqlite:///") :])
    return (db.parent / "mlartifacts" / experiment).resolve().as_uri()


def quiet_migrations() -> None:
    for name in ("alembic", "mlflow.store.db.utils", "mlflow.store.sql_alchemy"):
        logging.getLogger(name).setLevel(logging.WARNING)


def check_store(uri: str) -> None:
    """A local sqlite store that is some other file is one line, not SQLAlchemy's traceback."""
    db = Path(uri[len("sqlite:///") :]) if uri.startswith("sqlite:///") else None
    if db is None or not db.is_file() or db.stat().st_size == 0:
        return  # MLflow creates it
    with db.open("rb") as f:
        if f.read(16) != b"SQLite format 3\x00":
            from benchmark.core.errors import UserError

            raise UserError(
                f"MLflow store {str(db)!r} is not a SQLite database; move it away (a new one is created) "
                "or point MLFLOW_TRACKING_URI elsewhere"
            )


def ensure_experiment(uri: str, experiment: str) -> str:
    """Create the experiment if needed (call once before parallel workers start); returns its id."""
    check_store(uri)
    quiet_migrations()
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
        self,
        uri: str,
        experiment: str,
        run_name: str,
        tags: dict[str, str],
        parent_run_id: str | None = None,
        system_metrics: float | None = None,
    ):
        quiet_migrations()
        from mlflow.tracking import MlflowClient

        self.uri = uri
        self.client = MlflowClient(uri)
        experiment_id = ensure_experiment(uri, experiment)
        tags = {**context_tags(), **tags}
        if parent_run_id:
            tags = {**tags, "mlflow.parentRunId": parent_run_id}
        self.run_id = self.client.create_run(experiment_id, run_name=run_name, tags=tags).info.run_id
        self._monitor = None
        if system_metrics:
            from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

            self._monitor = SystemMetricsMonitor(self.run_id, sampling_interval=system_metrics, tracking_uri=uri)
            self._monitor.start()

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in sorted(flat_params(params).items())]
        for i in range(0, len(items), PARAM_CHUNK):
            self.client.log_batch(self.run_id, params=items[i : i + PARAM_CHUNK])

    def log_metrics(self, metrics: dict[str, Any], step: int = 0, section: str | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [
            Metric(metric_key(k, section), float(v), now, step)
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
            Metric(metric_key(name), float(v), now, step)
            for name, points in series.items()
            for step, v in points
            if math.isfinite(float(v))
        ]
        for i in range(0, len(items), 1000):
            self.client.log_batch(self.run_id, metrics=items[i : i + 1000])

    def log_dataset(self, name: str, split_hash: str, sizes: dict[str, int]) -> None:
        """The cell's data as an MLflow dataset input: its name, the digest of the seed's split and the split
        sizes (the run page's "Datasets used"; runs on the same split share the digest)."""
        from mlflow.entities import Dataset, DatasetInput, InputTag
        from mlflow.exceptions import MlflowException
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

        source = json.dumps({"dataset": name, "split_hash": split_hash})
        profile = json.dumps({"num_rows": {split: int(n) for split, n in sizes.items()}})
        dataset = Dataset(name=name, digest=split_hash[:36], source_type="code", source=source, profile=profile)
        inputs = [DatasetInput(dataset, tags=[InputTag(MLFLOW_DATASET_CONTEXT, "train+val+test")])]
        for attempt in range(DATASET_ATTEMPTS):
            try:
                self.client.log_inputs(self.run_id, datasets=inputs)
                return
            except MlflowException as exc:  # wrapping the store's IntegrityError
                # MLflow looks the dataset up, then inserts it: two cells of one experiment that log the same
                # split at once both miss it and one insert breaks the unique key. The next try finds the row.
                text = str(exc).lower()  # sqlite/PostgreSQL: "unique constraint"; MySQL: "duplicate entry"
                if ("unique" not in text and "duplicate" not in text) or attempt == DATASET_ATTEMPTS - 1:
                    raise
                time.sleep(0.05 * (attempt + 1))

    def log_model(self, model: Any, inputs: Any) -> None:
        """The final network as an MLflow PyTorch model under the artifact path `model`, with the signature
        inferred from two samples of `inputs` (a dataset of (image, label)) and the versions it needs."""
        import mlflow.pytorch
        import timm
        import torch
        from mlflow.models import infer_signature

        example = torch.stack([inputs[i][0] for i in range(min(2, len(inputs)))])
        model.eval()
        with torch.no_grad():
            output = model(example)
        signature = infer_signature(example.numpy(), output.numpy())
        requirements = [f"torch=={torch.__version__.split('+')[0]}", f"timm=={timm.__version__}"]
        with tempfile.TemporaryDirectory() as tmp:
            mlflow.pytorch.save_model(
                model,
                Path(tmp) / "model",
                signature=signature,
                pip_requirements=requirements,
                serialization_format="pickle",
            )
            self.client.log_artifacts(self.run_id, str(Path(tmp) / "model"), "model")

    def log_artifact(self, path: str | Path) -> None:
        self.client.log_artifact(self.run_id, str(path))

    def set_tag(self, key: str, value: str) -> None:
        self.client.set_tag(self.run_id, key, value)

    def finish(self, status: str = "FINISHED") -> None:
        if self._monitor is not None:
            self._monitor.finish()
            self._monitor = None
        self.client.set_terminated(self.run_id, status=status)


class NullTracker:
    """Used with `--no-track`: the same calls, nothing recorded."""

    run_id = None

    def log_params(self, params: dict[str, Any]) -> None: ...
    def log_metrics(self, metrics: dict[str, Any], step: int = 0, section: str | None = None) -> None: ...
    def log_series(self, series: dict[str, list[tuple[int, float]]]) -> None: ...
    def log_dataset(self, name: str, split_hash: str, sizes: dict[str, int]) -> None: ...
    def log_model(self, model: Any, inputs: Any) -> None: ...
    def log_artifact(self, path: str | Path) -> None: ...
    def set_tag(self, key: str, value: str) -> None: ...
    def finish(self, status: str = "FINISHED") -> None: ...


def _system_metrics_interval(settings: TrackingSettings) -> float | None:
    from mlflow.environment_variables import MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING

    on = settings.system_metrics or MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING.get()
    return settings.system_metrics_interval if on else None


def open_cell_tracker(settings: TrackingSettings, cell: Any) -> CellTracker:
    """The run a cell (`runner.CellIdentity`) logs to, named and tagged by `cell_run_identity`: a child of the
    study's run when there is one; nothing with tracking off."""
    if not settings.enabled:
        return NullTracker()
    run_name, tags = cell_run_identity(cell, settings.operating_point)
    uri = settings.uri or default_tracking_uri()
    check_store(uri)  # before MLflow's client, whose error is a page of SQLAlchemy
    return Tracker(uri, settings.experiment, run_name, tags, settings.parent_run_id, _system_metrics_interval(settings))


def run_url(tracking: TrackingSettings, run_id: str, base_url: str | None = None) -> str:
    """Where a run's page is in the MLflow UI: `base_url` (default MLFLOW_UI_URL, else the `make ui` address)
    + `#/experiments/<id>/runs/<run id>`."""
    from mlflow.tracking import MlflowClient

    base = (base_url or os.environ.get("MLFLOW_UI_URL") or "http://127.0.0.1:5000").rstrip("/")
    run = MlflowClient(tracking.uri or default_tracking_uri()).get_run(run_id)
    return f"{base}/#/experiments/{run.info.experiment_id}/runs/{run_id}"
