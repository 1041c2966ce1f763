"""Shared fixtures. Tests use real timm models, a real (temporary) MLflow sqlite store and real DVC."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["DVC_NO_ANALYTICS"] = "1"

ROOT = Path(__file__).resolve().parent.parent
# Under pytest-xdist (`make test` runs two workers) each worker gets its share of the cores, and so do
# the processes a test starts: oversubscribed OpenMP threads spin and slow everything down.
_CORES = len(os.sched_getaffinity(0))
_THREADS = max(1, _CORES // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
os.environ["OMP_NUM_THREADS"] = str(_THREADS)
torch.set_num_threads(_THREADS)


@pytest.fixture(scope="session")
def _empty_mlflow_store(tmp_path_factory) -> Path:
    """An empty sqlite tracking store with MLflow's tables created, once per test worker.

    Creating the tables (MLflow's database migrations) takes 5-10 s on a 2-core machine; a copy of
    the migrated file is the same empty store in a fraction of a second.
    """
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()  # creates and migrates the tables
    return path


@pytest.fixture
def mlflow_uri(tmp_path, monkeypatch, _empty_mlflow_store) -> str:
    """A fresh (empty) sqlite tracking store for this test, also exported for subprocesses."""
    shutil.copyfile(_empty_mlflow_store, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


@pytest.fixture
def tiny_cfg():
    """A cell that trains in about a second: 8x8 digits, one epoch, few latency repeats."""
    from benchmark.core.config import RunConfig

    cfg = RunConfig()
    cfg.train.epochs = 1
    cfg.data.input_size = 8
    cfg.measure.latency_repeats = 2
    cfg.measure.latency_warmup = 1
    cfg.measure.latency_batch_sizes = [1, 4]
    return cfg


TINY_ARGS = [
    "--epochs",
    "1",
    "--set",
    "data.input_size=8",
    "--set",
    "measure.latency_repeats=2",
    "--set",
    "measure.latency_warmup=1",
    "--quiet",
]


def run_cli(*args: str, env: dict | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """Run `python -m benchmark ...` as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "benchmark", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=600,
    )


def run_cli_here(*args: str) -> subprocess.CompletedProcess:
    """`benchmark.cli.main(args)` in this process, with its exit status and printed output.

    For checks of what the CLI says and leaves behind on bad input: no interpreter start-up (torch and
    timm are imported once per test worker, not once per case). `run_cli` stays for what needs a real
    `python -m benchmark` process.
    """
    import io
    from contextlib import redirect_stderr, redirect_stdout

    from benchmark.cli import main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code if isinstance(exc.code, int) else 1
    return subprocess.CompletedProcess(["benchmark", *args], code, out.getvalue(), err.getvalue())


def mlflow_runs(uri: str, experiment: str = "pruning-benchmark") -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    return client.search_runs([exp.experiment_id])


@pytest.fixture
def repo_copy(tmp_path):
    """The tracked project files in a fresh git repository: what a new clone has (no results, no MLflow db)."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    dest = tmp_path / "repo"
    for name in files:
        if name.startswith(("results/", "data/", "reports/")) or name == "dvc.lock" or not (ROOT / name).is_file():
            continue
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, dest / name)
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.org"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "fresh clone"]):
        subprocess.run(git + args, cwd=dest, check=True, capture_output=True)
    return dest


def dvc(repo: Path, *args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "MLFLOW_TRACKING_URI": f"sqlite:///{repo / 'mlflow.db'}",
        "PYTHONPATH": str(repo),
    }
    return subprocess.run(
        [str(Path(sys.executable).parent / "dvc"), *args],
        cwd=repo,
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )


def crashing_method(folder: Path, train_first: bool = False) -> str:
    """Write and register a plugin whose method raises 'pruning step diverged'; returns its name."""
    import textwrap
    import uuid

    from benchmark.cell.plugins import discover

    name = f"explodes_{uuid.uuid4().hex[:8]}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.py").write_text(
        textwrap.dedent(f"""
        from benchmark.api import register_method

        @register_method("{name}", citation="test", granularity="structured", schedule="during_training")
        def method(ctx):
            if {train_first}:
                ctx.train(ctx.model, epochs=1)
            raise RuntimeError("pruning step diverged")
    """)
    )
    discover([folder])
    return name
