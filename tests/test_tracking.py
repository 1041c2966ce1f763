"""MLflow bookkeeping of cells: finished, failed, skipped."""

import pytest

from benchmark.cell.runner import identify, is_done, run_cell
from benchmark.core.tracking import TrackingSettings
from benchmark.study.cells import Cell
from benchmark.study.profiles import ExecutorSettings
from benchmark.study.scheduler import run_study
from tests.conftest import crashing_method, mlflow_runs


def test_a_method_that_crashes_leaves_a_failed_run_and_no_result(tmp_path, mlflow_uri, tiny_cfg):
    name = crashing_method(tmp_path / "plugins", train_first=True)
    tiny_cfg.method = name
    with pytest.raises(RuntimeError, match="diverged"):
        run_cell(tiny_cfg, tmp_path / "cell", TrackingSettings(uri=mlflow_uri), progress=False)
    assert not (tmp_path / "cell" / "metrics.json").exists()
    (run,) = mlflow_runs(mlflow_uri)
    assert run.info.status == "FAILED"
    assert run.data.tags["error"] == "RuntimeError: pruning step diverged"
    assert "val_top1" in run.data.metrics  # the epoch it did train is still on record


def _cell_runs(uri: str) -> list:
    return [r for r in mlflow_runs(uri) if r.data.tags.get("kind") != "study"]


def test_finished_cells_are_skipped_and_changed_ones_rerun(tmp_path, mlflow_uri, tiny_cfg):
    out = tmp_path / "cell"
    settings = TrackingSettings(uri=mlflow_uri)
    serial = ExecutorSettings(backend="serial")
    first = run_study("test", [Cell(tiny_cfg, out, "dense")], serial, settings, lock_folder=tmp_path)
    assert (first.finished, first.skipped) == (1, 0)
    assert is_done(out, identify(tiny_cfg))
    result = (out / "metrics.json").read_text()
    second = run_study("test", [Cell(tiny_cfg, out, "dense")], serial, settings, lock_folder=tmp_path)
    assert (second.finished, second.skipped) == (0, 1)
    assert (out / "metrics.json").read_text() == result and len(_cell_runs(mlflow_uri)) == 1  # nothing recomputed

    tiny_cfg.train.lr = 0.01  # a different config is a different cell
    assert not is_done(out, identify(tiny_cfg))
    run_study("test", [Cell(tiny_cfg, out, "dense")], serial, settings, lock_folder=tmp_path)
    assert len(_cell_runs(mlflow_uri)) == 2


def test_a_result_whose_run_a_kill_left_open_is_finished_on_resume(tmp_path, mlflow_uri, tiny_cfg):
    """A kill between the atomic metrics.json and the run's end: the result is kept, and its run is closed."""
    from mlflow.tracking import MlflowClient

    out = tmp_path / "cell"
    settings, serial = TrackingSettings(uri=mlflow_uri), ExecutorSettings(backend="serial")
    run_study("test", [Cell(tiny_cfg, out, "dense")], serial, settings, lock_folder=tmp_path)
    (run,) = _cell_runs(mlflow_uri)
    MlflowClient(mlflow_uri).update_run(run.info.run_id, status="RUNNING")  # what the kill leaves behind
    again = run_study("test", [Cell(tiny_cfg, out, "dense")], serial, settings, lock_folder=tmp_path)
    assert (again.finished, again.skipped) == (0, 1)
    (run,) = _cell_runs(mlflow_uri)
    assert run.info.status == "FINISHED" and "killed" in run.data.tags["recovered"]
