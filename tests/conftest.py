"""Shared fixtures. Tests use real timm models, a real (temporary) MLflow sqlite store and real DVC."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["DVC_NO_ANALYTICS"] = "1"

ROOT = Path(__file__).resolve().parent.parent
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture
def mlflow_uri(tmp_path, monkeypatch) -> str:
    """A fresh sqlite tracking store for this test, also exported for subprocesses."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


@pytest.fixture
def tiny_cfg():
    """A cell that trains in about a second: 8x8 digits, one epoch, few latency repeats."""
    from benchmark.config import RunConfig

    cfg = RunConfig()
    cfg.train.epochs = 1
    cfg.data.input_size = 8
    cfg.measure.latency_repeats = 2
    cfg.measure.latency_warmup = 1
    cfg.measure.latency_batch_sizes = [1, 4]
    return cfg


TINY_ARGS = ["--epochs", "1", "--set", "data.input_size=8", "--set", "measure.latency_repeats=2",
             "--set", "measure.latency_warmup=1", "--quiet"]


def run_cli(*args: str, env: dict | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """Run `python -m benchmark ...` as a user would."""
    return subprocess.run([sys.executable, "-m", "benchmark", *args], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, **(env or {})}, timeout=600)


def mlflow_runs(uri: str, experiment: str = "pruning-benchmark") -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    return client.search_runs([exp.experiment_id])
