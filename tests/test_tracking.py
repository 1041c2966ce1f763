"""MLflow bookkeeping of cells: finished, failed, skipped."""

import textwrap
import uuid

import pytest

from benchmark.execution import run_cells
from benchmark.methods import discover
from benchmark.runner import TrackingSettings, identify, is_done, run_cell
from tests.conftest import mlflow_runs


def test_a_method_that_crashes_leaves_a_failed_run_and_no_result(tmp_path, mlflow_uri, tiny_cfg):
    name = f"explodes_{uuid.uuid4().hex[:8]}"
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / f"{name}.py").write_text(textwrap.dedent(f"""
        from benchmark.methods import register_method

        @register_method("{name}", citation="test", granularity="structured", schedule="during_training")
        def method(ctx):
            ctx.train(ctx.model, epochs=1)
            raise RuntimeError("pruning step diverged")
    """))
    discover([plugins])
    tiny_cfg.method = name
    with pytest.raises(RuntimeError, match="diverged"):
        run_cell(tiny_cfg, tmp_path / "cell", TrackingSettings(uri=mlflow_uri), progress=False)
    assert not (tmp_path / "cell" / "metrics.json").exists()
    (run,) = mlflow_runs(mlflow_uri)
    assert run.info.status == "FAILED"
    assert run.data.tags["error"] == "RuntimeError: pruning step diverged"
    assert "val_top1" in run.data.metrics  # the epoch it did train is still on record


def test_finished_cells_are_skipped_and_changed_ones_rerun(tmp_path, mlflow_uri, tiny_cfg):
    out = tmp_path / "cell"
    cells = [(tiny_cfg, out)]
    settings = TrackingSettings(uri=mlflow_uri)
    first = run_cells("test", cells, tracking=settings, save_model=False)
    assert is_done(out, identify(tiny_cfg))
    second = run_cells("test", cells, tracking=settings, save_model=False)
    assert second == first and len(mlflow_runs(mlflow_uri)) == 1  # nothing recomputed, no new run

    tiny_cfg.train.lr = 0.01  # a different config is a different cell
    assert not is_done(out, identify(tiny_cfg))
    run_cells("test", [(tiny_cfg, out)], tracking=settings, save_model=False)
    assert len(mlflow_runs(mlflow_uri)) == 2
