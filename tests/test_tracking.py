"""MLflow bookkeeping of cells: finished, failed, skipped."""

import multiprocessing as mp
import time

import pytest
from mlflow.tracking import MlflowClient

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
    assert "val/top1" in run.data.metrics  # the epoch it did train is still on record


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


# --- what a run says about its cell ------------------------------------------------------------------------


def _small(cfg, method: str, sparsity: float | None = None):
    import copy

    cfg = copy.deepcopy(cfg)
    cfg.method, cfg.model.arch = method, "test_resnet"
    cfg.measure.latency_batch_sizes = [1]
    if sparsity is not None:
        cfg.method_args.update(sparsity=sparsity, finetune_epochs=1)
    return cfg


@pytest.fixture
def tracked_study(tmp_path_factory):
    """A four-cell study on test_resnet with real MLflow: dense, fpgm at 0.5, and fpgm and l1_filter at the
    rate of an EDropout point ('matched@p_init=0.5', as the study labels matched cells). Run once per module."""
    import os

    from benchmark.core.config import RunConfig

    tmp = tmp_path_factory.mktemp("tracked")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    old = {k: os.environ.get(k) for k in ("BENCHMARK_RESULTS", "BENCHMARK_CHECKPOINTS", "MLFLOW_TRACKING_URI")}
    os.environ.update(
        BENCHMARK_RESULTS=str(tmp / "results"), BENCHMARK_CHECKPOINTS=str(tmp / "ckpt"), MLFLOW_TRACKING_URI=uri
    )
    try:
        base = RunConfig()
        base.train.epochs, base.data.input_size = 1, 8
        base.measure.latency_repeats, base.measure.latency_warmup = 2, 1
        cells = [
            Cell(_small(base, "dense"), tmp / "dense", "dense"),
            Cell(_small(base, "fpgm", 0.5), tmp / "fpgm-0.5", "0.5"),
            Cell(_small(base, "fpgm", 0.4), tmp / "fpgm-m", "matched@p_init=0.5"),
            Cell(_small(base, "l1_filter", 0.4), tmp / "l1-m", "matched@p_init=0.5"),
        ]
        outcome = run_study(
            "probe", cells, ExecutorSettings(backend="serial"), TrackingSettings(uri=uri), lock_folder=tmp
        )
        assert outcome.finished == 4
        yield uri, tmp
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def test_cell_runs_are_named_and_tagged_by_every_coordinate_and_carry_context(tracked_study):
    uri, _ = tracked_study
    runs = _cell_runs(uri)
    names = sorted(r.info.run_name for r in runs)
    assert len(set(names)) == 4  # unique per cell, also where method, arch, dataset and seed are the same
    by_point = {(r.data.tags["method"], r.data.tags["operating_point"]): r for r in runs}
    assert set(by_point) == {("dense", "dense"), ("fpgm", "0.5"), ("fpgm", "matched@p_init=0.5"),
                             ("l1_filter", "matched@p_init=0.5")}  # fmt: skip
    matched = by_point[("fpgm", "matched@p_init=0.5")]
    assert matched.info.run_name.startswith("fpgm-test_resnet-digits-s0-matched-p_init=0.5-")
    assert by_point[("fpgm", "0.5")].info.run_name.startswith("fpgm-test_resnet-digits-s0-0.5-")
    tags = matched.data.tags
    assert {k: tags[k] for k in ("arch", "dataset", "seed", "budget", "granularity", "edropout_point")} == {
        "arch": "test_resnet",
        "dataset": "digits",
        "seed": "0",
        "budget": "paper",
        "granularity": "structured",
        "edropout_point": "p_init=0.5",
    }
    assert "edropout_point" not in by_point[("fpgm", "0.5")].data.tags  # a fixed rate belongs to no EDropout point
    for run in runs:  # MLflow's own context tags, as the fluent API sets them
        t = run.data.tags
        assert t["mlflow.user"] and t["mlflow.source.type"] == "LOCAL" and not t["mlflow.source.name"].startswith("/")
        assert len(t["mlflow.source.git.commit"]) == 40


def test_cell_runs_log_their_dataset_sectioned_metrics_and_portable_params(tracked_study):
    from benchmark.core.io import read_json

    uri, tmp = tracked_study
    split_hash = {m["mlflow_run_id"]: m["split_hash"] for m in map(read_json, tmp.glob("*/metrics.json"))}
    assert len(split_hash) == 4
    for run in _cell_runs(uri):
        (data,) = run.inputs.dataset_inputs
        assert data.dataset.name == "digits" and data.dataset.digest == split_hash[run.info.run_id]
        assert '"test": 360' in data.dataset.profile and data.tags[0].key == "mlflow.data.context"
        sections = {name.split("/")[0] for name in run.data.metrics}
        assert sections == {"train", "val", "final"}, sorted(run.data.metrics)
        assert {"final/top1", "final/params", "train/loss", "val/top1"} <= set(run.data.metrics)
        params = run.data.params
        assert "method_args" not in params  # never a '{}' string: flattened (or absent) for every method
        assert not [v for v in params.values() if v.startswith("/")]  # no absolute paths
    fpgm = next(r for r in _cell_runs(uri) if r.data.tags["operating_point"] == "0.5")
    assert fpgm.data.params["method_args.sparsity"] == "0.5" and fpgm.data.params["method_args.finetune_epochs"] == "1"


def test_the_readme_query_finds_the_best_method_at_an_edropout_point(tracked_study, monkeypatch):
    """The README's search query, run as written: the matched baselines on one arch, best first."""
    import re

    from tests.conftest import ROOT

    uri, _ = tracked_study
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    readme = (ROOT / "README.md").read_text()
    (code,) = re.findall(r"```python\n(# best method at EDropout's rate.*?)```", readme, re.S)
    scope: dict = {}
    exec(code, scope)  # noqa: S102 - the documented snippet itself
    best = scope["best"]
    assert list(best.index) == sorted(best.index, key=lambda m: -best.loc[m, "mean"])
    assert set(best.index) == {"fpgm", "l1_filter"} and set(best["count"]) == {1}
    top1 = {r.data.tags["method"]: r.data.metrics["final/top1"] for r in _cell_runs(uri)
            if r.data.tags["operating_point"].startswith("matched")}  # fmt: skip
    assert best["mean"].to_dict() == pytest.approx(top1)


def test_the_study_run_carries_the_profile_outputs_and_a_description(tracked_study, tmp_path):
    from mlflow.tracking import MlflowClient

    from benchmark.core.study_runs import record_study_outputs

    uri, _ = tracked_study
    report = tmp_path / "report.html"
    report.write_text("<html></html>")
    csv = tmp_path / "results.csv"
    csv.write_text("cell,status\n")
    settings = TrackingSettings(uri=uri)
    profile = {"archs": ["test_resnet"], "method_args": {"edropout": {"population": 8}}, "seeds": [0]}
    run_id = record_study_outputs(settings, "probe", profile, [report, csv], "4 cells finished.")
    client = MlflowClient(uri)
    run = client.get_run(run_id)
    assert run.data.tags["kind"] == "study" and run_id == _cell_runs(uri)[0].data.tags["mlflow.parentRunId"]
    assert run.data.params["method_args.edropout.population"] == "8" and run.data.params["seeds"] == "[0]"
    assert "4 cells finished." in run.data.tags["mlflow.note.content"]
    files = {f.path for f in client.list_artifacts(run_id)} | {f.path for f in client.list_artifacts(run_id, "report")}
    assert {"profile.json", "report/report.html", "report/results.csv"} <= files
    # a profile edited since: the first values stay as params (MLflow's are immutable), the change is tagged
    record_study_outputs(settings, "probe", {**profile, "seeds": [0, 1]}, [], "again")
    run = client.get_run(run_id)
    assert run.data.params["seeds"] == "[0]" and run.data.tags["profile_changed"] == "seeds"
    assert record_study_outputs(settings, "no-such-study", profile, [], "") is None


def _log_digits_at(uri: str, run_id: str, start: float) -> str:
    """One cell's dataset logging, released at `start` (a forked worker of the race test)."""
    from benchmark.core.tracking import Tracker

    tracker = Tracker.__new__(Tracker)  # the run exists already: only its client is needed
    tracker.client, tracker.run_id = MlflowClient(uri), run_id
    while time.time() < start:
        pass
    try:
        tracker.log_dataset("digits", "f" * 64, {"train": 1, "val": 1, "test": 1})
        return "ok"
    except Exception as exc:  # noqa: BLE001 - the test reports what went wrong
        return f"{type(exc).__name__}: {exc}"


def test_cells_logging_the_same_dataset_at_once_all_succeed(mlflow_uri):
    """MLflow's log_inputs looks a dataset up and then inserts it, so cells of one study that log the same split
    at the same instant race for the unique key (a CI run lost a cell to it). Four processes released at once:
    every one links the dataset, and the store holds it once."""
    from benchmark.core.tracking import Tracker

    runs = [Tracker(mlflow_uri, "race", f"cell{i}", tags={}).run_id for i in range(4)]
    start = time.time() + 1.0  # after every worker has forked and imported MLflow
    with mp.get_context("fork").Pool(4) as pool:
        outcomes = pool.starmap(_log_digits_at, [(mlflow_uri, run, start) for run in runs])
    assert outcomes == ["ok"] * 4, outcomes
    client = MlflowClient(mlflow_uri)
    for run in runs:
        (data,) = client.get_run(run).inputs.dataset_inputs
        assert data.dataset.name == "digits" and data.dataset.digest == "f" * 36
