"""EDropout inside the suite: the command line, MLflow curves and metrics (its speed: tests/benchmarks/)."""

import json

import pytest

from tests.conftest import TINY_ARGS, mlflow_runs, run_cli, run_cli_here

EPOCHS = ["--epochs", "2"]


def test_edropout_cell_end_to_end(tmp_path, mlflow_uri):
    out = tmp_path / "cell"
    proc = run_cli(
        "run", "--method", "edropout", "--out", str(out), *TINY_ARGS[2:], *EPOCHS, "--set", "method_args.energy_batch=8"
    )
    assert proc.returncode == 0, proc.stderr
    m = json.loads((out / "metrics.json").read_text())
    for key in (
        "param_pruning_rate",
        "channel_pruning_rate",
        "top1_full",
        "top5_full",
        "search_seconds",
        "converged_epoch",
    ):
        assert key in m, key
    assert m["converged_epoch"] == 2  # stop_fraction 0.5 of 2 epochs: the search ends after epoch 1
    assert 0.0 < m["channel_pruning_rate"] < 1.0 and 0.0 < m["param_pruning_rate"] < 1.0
    # measured on the physically shrunk network: fewer parameters and MACs than ResNet-18 itself
    assert m["params"] == m["params_nonzero"] < 11_172_810 * (1 - m["param_pruning_rate"]) + 1
    assert m["macs"] < 34_760_000
    assert m["config"]["method_args"] == {"energy_batch": 8}

    (run,) = mlflow_runs(mlflow_uri)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_uri)
    generations = client.get_metric_history(run.info.run_id, "search/best_energy")
    steps_per_epoch = -(-1293 // 64)
    assert [g.step for g in generations] == list(range(1, steps_per_epoch + 1))  # one per mini-batch, epoch 1
    for name in ("search/mean_energy", "search/diversity", "search/kept_fraction"):
        assert len(client.get_metric_history(run.info.run_id, name)) == steps_per_epoch
    assert len(client.get_metric_history(run.info.run_id, "train/kept_fraction")) == 2  # per-epoch curve
    assert run.data.metrics["final/param_pruning_rate"] == pytest.approx(m["param_pruning_rate"])


def test_bad_edropout_settings_fail_before_anything_runs(tmp_path, mlflow_uri):
    out = tmp_path / "cell"
    proc = run_cli_here(
        "run", "--method", "edropout", "--out", str(out), *TINY_ARGS, "--set", "method_args.population=3"
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "error: bad method_args for edropout: EDropout population must be >= 4 "
        "(differential evolution needs a parent and three distinct donors), got 3"
    )
    assert not (out / "metrics.json").exists() and mlflow_runs(mlflow_uri) == []


def test_dense_takes_no_method_args(tmp_path, mlflow_uri):
    proc = run_cli_here("run", "--out", str(tmp_path / "c"), *TINY_ARGS, "--set", "method_args.sparsity=0.5")
    assert proc.returncode == 2 and "method 'dense' takes no method_args, got sparsity" in proc.stderr
