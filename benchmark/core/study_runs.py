"""MLflow runs at the study level: the study's parent run (profile, report, description), the
reconciliation of cell runs with results on disk after a kill, and the retirement of superseded runs
so a query for FINISHED runs counts every cell once. Cell runs themselves: `benchmark.core.tracking`.

Nothing here changes what a cell computes, so editing it never re-runs a cell."""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

from benchmark.core.paths import PROJECT_ROOT
from benchmark.core.tracking import (
    PARAM_CHUNK,
    TrackingSettings,
    check_store,
    context_tags,
    default_tracking_uri,
    ensure_experiment,
    flat_params,
    quiet_migrations,
)


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
        tags = {**context_tags(), "study_key": key, "study": name, "kind": "study", NOTE: study_description(name)}
        run_id = client.create_run(experiment_id, run_name=f"study-{name}", tags=tags).info.run_id
    return run_id


NOTE = "mlflow.note.content"  # the description the UI shows on a run's page (markdown)


def study_description(name: str, report: str | None = None) -> str:
    """The parent run's description: what the run is, and where its outputs are once the report stage ran."""
    text = (
        f"Study of profile `{name}` (params.yaml): one child run per cell, named and tagged by method, arch, "
        "dataset, seed, operating point (`tags.operating_point`, as in results.csv), budget and variant. "
        "Metrics are grouped as `train/`, `val/`, `search/` (per epoch or generation) and `final/` (the result)."
    )
    if report:
        text += f"\n\n{report}"
    return text


def find_study_run(tracking: TrackingSettings, name: str) -> str | None:
    """The parent run of the study `name` of this checkout, if the store has one (nothing is created)."""
    uri = tracking.uri or default_tracking_uri()
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///") :]).is_file():
        return None
    check_store(uri)
    quiet_migrations()
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(tracking.experiment)
    if experiment is None:
        return None
    found = client.search_runs(
        [experiment.experiment_id],
        f"tags.study_key = '{study_key(name)}'",
        max_results=1,
        order_by=["attributes.start_time DESC"],
    )
    return found[0].info.run_id if found else None


def record_study_outputs(
    tracking: TrackingSettings, name: str, profile: dict[str, Any], files: list[Path], summary: str
) -> str | None:
    """Put the study's profile (params, and `profile.json` as an artifact), its outputs (the report,
    results.csv) and a description with `summary` on the study's parent run. Returns its id (None: no
    such run, e.g. tracking was off or the study ran elsewhere).

    MLflow params cannot change, so a profile edited since the run was created keeps its first values as
    params and the new ones in `profile.json` and the `profile_changed` tag."""
    if not tracking.enabled:
        return None
    run_id = find_study_run(tracking, name)
    if run_id is None:
        return None
    from mlflow.entities import Param

    client = _client(tracking)
    logged = client.get_run(run_id).data.params
    params = {k: str(v)[:6000] for k, v in flat_params(profile).items()}
    new = [Param(k, v) for k, v in sorted(params.items()) if k not in logged]
    for i in range(0, len(new), PARAM_CHUNK):
        client.log_batch(run_id, params=new[i : i + PARAM_CHUNK])
    changed = sorted(k for k, v in params.items() if k in logged and logged[k] != v)
    if changed:
        client.set_tag(run_id, "profile_changed", ", ".join(changed)[:5000])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "profile.json"
        path.write_text(json.dumps(profile, indent=2, default=str) + "\n")
        client.log_artifact(run_id, str(path))
    for file in files:
        if Path(file).is_file():
            client.log_artifact(run_id, str(file), "report")
    client.set_tag(run_id, NOTE, study_description(name, summary))
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


# -- faults: runs a dead worker left open, and runs a recomputed cell supersedes (issue 14) -----------


def fail_open_cell_runs(tracking: TrackingSettings, config_hash: str, error: str) -> int:
    """Close as FAILED, with `error`, the RUNNING runs of the cell `config_hash` under the study's run: a
    worker that died or was stopped could not close its own. Returns how many were closed."""
    if tracking.parent_run_id is None:
        return 0
    client = _client(tracking)
    experiment = client.get_experiment_by_name(tracking.experiment)
    if experiment is None:
        return 0
    runs = client.search_runs(
        [experiment.experiment_id],
        f"tags.mlflow.parentRunId = '{tracking.parent_run_id}' and tags.config_hash = '{config_hash}' "
        "and attributes.status = 'RUNNING'",
        max_results=1000,
    )
    for run in runs:
        client.set_tag(run.info.run_id, "error", error[:5000])
        client.set_terminated(run.info.run_id, status="FAILED")
    return len(runs)


RETIRED_TAG = "retired"


def retire_superseded_runs(tracking: TrackingSettings, config_hash: str, current_run_id: str | None) -> list[str]:
    """A recomputed cell's earlier FINISHED runs become KILLED with a `retired` tag naming the run that
    replaced them, so a query for FINISHED runs counts every cell once. Returns their ids."""
    if not tracking.enabled or current_run_id is None:
        return []
    client = _client(tracking)
    experiment = client.get_experiment_by_name(tracking.experiment)
    if experiment is None:
        return []
    runs = client.search_runs(
        [experiment.experiment_id],
        f"tags.config_hash = '{config_hash}' and attributes.status = 'FINISHED'",
        max_results=1000,
    )
    retired = [run.info.run_id for run in runs if run.info.run_id != current_run_id]
    for run_id in retired:
        client.set_tag(run_id, RETIRED_TAG, f"superseded by run {current_run_id} (the cell was recomputed)")
        client.set_terminated(run_id, status="KILLED")
    return retired
