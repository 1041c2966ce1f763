"""Running a study: parallel workers, one sqlite store, failures, SIGKILL and resume, Ray."""

from __future__ import annotations

import collections
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from benchmark.core.config import RunConfig
from benchmark.core.tracking import TrackingSettings
from benchmark.study.aggregate import write_results_csv
from benchmark.study.cells import Cell, dense_cells, method_cells
from benchmark.study.profiles import ExecutorSettings, get_profile
from benchmark.study.scheduler import FAILED_FILE, plan_workers, run_study
from tests.conftest import crashing_method, mlflow_runs


def _tiny(seed: int = 0, method: str = "dense") -> RunConfig:
    """A cell of about a second: the 0.4M-parameter test_resnet on 8x8 digits, one epoch."""
    cfg = RunConfig(method=method, seed=seed)
    cfg.model.arch, cfg.train.epochs, cfg.data.input_size = "test_resnet", 1, 8
    cfg.measure.latency_repeats, cfg.measure.latency_warmup, cfg.measure.latency_batch_sizes = 1, 0, [1]
    return cfg


def _children(uri: str) -> list:
    return [r for r in mlflow_runs(uri) if r.data.tags.get("kind") != "study"]


def test_workers_share_the_cores_instead_of_oversubscribing(monkeypatch):
    monkeypatch.setattr("benchmark.study.backends.cpu_cores", lambda: 8)
    assert plan_workers(ExecutorSettings(workers=2)) == (2, 4)
    assert plan_workers(ExecutorSettings()) == (8, 1)
    assert plan_workers(ExecutorSettings(workers=4), cells=1) == (1, 8)  # one cell left: it gets every core
    assert plan_workers(ExecutorSettings(workers=2, threads_per_worker=3)) == (2, 3)


def test_two_workers_log_50_cells_into_one_sqlite_store_without_losing_a_run(tmp_path, mlflow_uri):
    cells = [Cell(_tiny(seed), tmp_path / "results" / f"seed{seed}", "dense") for seed in range(50)]
    outcome = run_study(
        "fifty",
        cells,
        ExecutorSettings(backend="local", workers=2),
        TrackingSettings(uri=mlflow_uri),
        lock_folder=tmp_path,
    )
    assert (outcome.finished, outcome.failed) == (50, [])
    runs = _children(mlflow_uri)
    assert len(runs) == 50 and {r.info.status for r in runs} == {"FINISHED"}
    recorded = {json.loads((c.out / "metrics.json").read_text())["mlflow_run_id"] for c in cells}
    assert recorded == {r.info.run_id for r in runs}  # every result points at its own run
    (parent,) = [r for r in mlflow_runs(mlflow_uri) if r.data.tags.get("kind") == "study"]
    assert {r.data.tags["mlflow.parentRunId"] for r in runs} == {parent.info.run_id}
    assert parent.info.status == "FINISHED" and parent.data.metrics["cells_run"] == 50


def test_a_failing_cell_is_recorded_and_the_study_goes_on(tmp_path, mlflow_uri, monkeypatch):
    name = crashing_method(tmp_path / "plugins")
    monkeypatch.setenv("PRUNING_BENCH_PLUGINS", str(tmp_path / "plugins"))  # the spawned workers find it too
    bad, good = Cell(_tiny(0, name), tmp_path / "bad", name), Cell(_tiny(0), tmp_path / "good", "dense")
    outcome = run_study(
        "mixed", [bad, good], ExecutorSettings(workers=2), TrackingSettings(uri=mlflow_uri), lock_folder=tmp_path
    )
    assert outcome.finished == 1
    assert outcome.failed == [(bad.label, "RuntimeError: pruning step diverged")]
    assert json.loads((bad.out / FAILED_FILE).read_text())["error"] == "RuntimeError: pruning step diverged"
    assert not (bad.out / "metrics.json").exists() and (good.out / "metrics.json").is_file()
    status = {r.data.tags["method"]: r.info.status for r in _children(mlflow_uri)}
    assert status == {name: "FAILED", "dense": "FINISHED"}
    (parent,) = [r for r in mlflow_runs(mlflow_uri) if r.data.tags.get("kind") == "study"]
    assert parent.data.metrics["cells_failed"] == 1 and name in parent.data.tags["failed_cells"]


def test_matched_cells_wait_for_edropout_and_fail_cleanly_without_it(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCHMARK_RESULTS", str(tmp_path / "results"))
    params = {
        "profiles": {
            "m": {
                "datasets": ["digits"],
                "archs": ["test_resnet"],
                "seeds": [0],
                "epochs": 1,
                "methods": ["edropout", "random_structured"],
                "operating_points": ["matched"],
                "set": {"data.input_size": 8, "measure.latency_repeats": 1},
            }
        }
    }
    profile = get_profile(params, "m")
    cells = method_cells(profile, tmp_path / "results")
    assert [c.operating_point for c in cells] == ["edropout", "matched"]
    assert cells[1].after == cells[0].out
    # without EDropout's cell in the study, the matched cell fails with the reason, nothing crashes
    outcome = run_study(
        "m", cells[1:], ExecutorSettings(backend="serial"), TrackingSettings(enabled=False), lock_folder=tmp_path
    )
    assert outcome.failed and "needs the result in" in outcome.failed[0][1] and "has no result" in outcome.failed[0][1]
    # with it, the matched cell runs after EDropout, at EDropout's rate
    outcome = run_study("m", cells, ExecutorSettings(workers=2), TrackingSettings(enabled=False), lock_folder=tmp_path)
    assert (outcome.finished, outcome.failed) == (2, [])
    edropout = json.loads((cells[0].out / "metrics.json").read_text())
    matched = json.loads((cells[1].out / "metrics.json").read_text())
    assert matched["config"]["method_args"]["sparsity"] == pytest.approx(edropout["param_pruning_rate"])
    assert not (cells[1].out / FAILED_FILE).exists()  # the earlier failure record is gone


KILL_PROFILE = {
    "datasets": ["digits"],
    "archs": ["test_resnet"],
    "seeds": [0, 1],
    "epochs": 2,
    "finetune_epochs": 1,
    "methods": ["edropout", "l1_filter", "global_magnitude", "random_structured"],
    "operating_points": [0.5, "matched"],
    "set": {"data.input_size": 8, "measure.latency_repeats": 2, "measure.latency_batch_sizes": [1]},
    "executor": {"backend": "local", "workers": 2},
}


def _cells_stage(repo: Path, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{repo / 'mlflow.db'}", "PYTHONPATH": str(repo)}
    return subprocess.Popen(
        [sys.executable, "-m", "pipelines.cells"],
        cwd=repo,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        **kwargs,
    )


@pytest.mark.slow
def test_a_study_killed_with_sigkill_resumes_without_duplicate_runs(repo_copy):
    params = yaml.safe_load((repo_copy / "params.yaml").read_text())
    params["profile"], params["profiles"]["kill"] = "kill", KILL_PROFILE
    (repo_copy / "params.yaml").write_text(yaml.safe_dump(params))
    results = repo_copy / "results" / "cells"
    done = lambda: sorted(results.rglob("metrics.json")) if results.exists() else []

    proc = _cells_stage(repo_copy, start_new_session=True)
    deadline = time.time() + 300
    while len(done()) < 4 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, "the study finished before it could be killed: " + proc.stdout.read()
    os.killpg(proc.pid, signal.SIGKILL)  # the study process and its workers, mid-run
    proc.wait()
    killed_with = len(done())
    assert 4 <= killed_with < 14

    resumed = _cells_stage(repo_copy)
    out, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, out
    assert f"{killed_with} already done" in out.splitlines()[0] or "already done" in out  # finished cells kept
    assert len(done()) == 14
    runs = _children(f"sqlite:///{repo_copy / 'mlflow.db'}")
    finished = collections.Counter(r.data.tags["config_hash"] for r in runs if r.info.status == "FINISHED")
    assert len(finished) == 14 and set(finished.values()) == {1}  # every cell once, none twice
    hashes = {json.loads(p.read_text())["config_hash"] for p in done()}
    assert hashes == set(finished)
    assert {r.info.status for r in runs} <= {"FINISHED", "KILLED"}  # runs cut off by the kill are closed


@pytest.mark.slow
def test_the_ray_backend_runs_cells_on_a_local_ray_instance(tmp_path, mlflow_uri):
    pytest.importorskip("ray")
    cells = [Cell(_tiny(seed), tmp_path / "results" / f"seed{seed}", "dense") for seed in range(3)]
    outcome = run_study(
        "ray",
        cells,
        ExecutorSettings(backend="ray", cpus_per_cell=1),
        TrackingSettings(uri=mlflow_uri),
        lock_folder=tmp_path,
    )
    assert (outcome.finished, outcome.failed) == (3, [])
    for cell in cells:  # the driver wrote what the Ray tasks sent back
        metrics = json.loads((cell.out / "metrics.json").read_text())
        assert metrics["status"] == "finished" and (cell.out / "config.json").is_file()
    runs = _children(mlflow_uri)
    assert len(runs) == 3 and {r.info.status for r in runs} == {"FINISHED"}
    again = run_study(
        "ray", cells, ExecutorSettings(backend="ray"), TrackingSettings(uri=mlflow_uri), lock_folder=tmp_path
    )
    assert (again.finished, again.skipped) == (0, 3)


def test_ray_on_a_cluster_refuses_a_local_sqlite_store(monkeypatch, tmp_path):
    pytest.importorskip("ray")
    from benchmark.core.errors import UserError

    monkeypatch.setenv("RAY_ADDRESS", "ray://head.example.org:10001")
    with pytest.raises(UserError, match="needs MLflow on a tracking server"):
        run_study(
            "ray",
            [Cell(_tiny(), tmp_path / "c", "dense")],
            ExecutorSettings(backend="ray"),
            TrackingSettings(uri=f"sqlite:///{tmp_path / 'm.db'}"),
            lock_folder=tmp_path,
        )
    assert not (tmp_path / "c" / "metrics.json").exists()


def test_a_second_study_on_the_same_results_is_refused(tmp_path):
    from benchmark.core.errors import UserError
    from benchmark.study.scheduler import StudyLock

    with StudyLock(tmp_path), pytest.raises(UserError, match=f"another study is running on {tmp_path}"):
        run_study(
            "x",
            [Cell(_tiny(), tmp_path / "c", "dense")],
            ExecutorSettings(backend="serial"),
            TrackingSettings(enabled=False),
            lock_folder=tmp_path,
        )


def test_the_results_table_has_a_row_for_every_cell_finished_failed_or_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCHMARK_RESULTS", str(tmp_path / "results"))
    params = {
        "profiles": {
            "a": {
                "datasets": ["digits"],
                "archs": ["test_resnet"],
                "seeds": [0, 1],
                "epochs": 1,
                "methods": ["dense"],
                "set": {"data.input_size": 8, "measure.latency_repeats": 1},
            }
        }
    }
    profile = get_profile(params, "a")
    done, broken = dense_cells(profile, tmp_path / "results")
    run_study("a", [done], ExecutorSettings(backend="serial"), TrackingSettings(enabled=False), lock_folder=tmp_path)
    broken.out.mkdir(parents=True)
    (broken.out / FAILED_FILE).write_text(json.dumps({"status": "failed", "error": "RuntimeError: boom"}))
    counts = write_results_csv(profile, tmp_path / "results", tmp_path / "results.csv")
    assert counts == {"finished": 1, "failed": 1, "missing": 0}
    table = pd.read_csv(tmp_path / "results.csv").set_index("seed")
    assert table.loc[0, "status"] == "finished" and table.loc[0, "top1"] > 50
    assert table.loc[1, "status"] == "failed" and table.loc[1, "error"] == "RuntimeError: boom"
    shutil.rmtree(broken.out)
    assert write_results_csv(profile, tmp_path / "results", tmp_path / "results.csv")["missing"] == 1


HEAVY_IMPORTS = (  # seconds each in a fresh cell process on a 2-core machine
    "torch",
    "timm",
    "mlflow.tracking",
    "mlflow.store.tracking.sqlalchemy_store",
    "git",
    "sklearn.model_selection",
    "sklearn.datasets",
    "scipy.stats",
)


def _modules_a_cell_imports(uri: str, out: str, queue) -> None:
    """In a cell process of the local backend: run one tiny tracked digits cell, report what it imported."""
    from benchmark.cell.runner import run_cell

    cfg = _tiny(method="random_unstructured")
    cfg.method_args = {"sparsity": 0.5}
    before = set(sys.modules)
    run_cell(cfg, Path(out), TrackingSettings(uri=uri), progress=False)
    queue.put(sorted(set(sys.modules) - before))


def test_the_fork_server_has_imported_what_a_cell_needs(tmp_path, mlflow_uri):
    """Cells of the local backend are forked from a server that preloads the harness, MLflow's sqlite store
    and scikit-learn: a cell that imported one of them itself would pay seconds, every cell (a study of 456
    cells once spent 1.5 s each on scikit-learn's import)."""
    import multiprocessing

    from benchmark.study.backends import PRELOAD

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)  # as LocalBackend does (the server is started once per process)
    queue = context.Queue()
    process = context.Process(target=_modules_a_cell_imports, args=(mlflow_uri, str(tmp_path / "cell"), queue))
    process.start()
    imported = queue.get(timeout=120)
    process.join(30)
    heavy = [m for m in imported if m in HEAVY_IMPORTS]
    assert heavy == [], f"a cell process imported {heavy} itself: add them to backends.PRELOAD"
    assert len(imported) < 100, f"a cell process imported {len(imported)} modules itself: {imported[:40]}"
