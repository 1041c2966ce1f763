"""Fault injection: every fault ends in a recorded, explained state (issue 14).

Each fault runs real worker processes on tiny cells (test_resnet on 8x8 digits, one epoch) with a real
MLflow sqlite store, and checks the same things: the cell's recorded state and message, the study going
on, nothing half-written, every cell accounted for, and MLflow agreeing with the result files. Faults
that need no time limit share one study (one cell each), so the file takes about a minute.

Faults (-> recorded state):
 1 planted pickle in the checkpoint store   -> refused, not run; the dense network trained again
 2 planted pickle as a model file            -> NotLoadable, not run
 3 a method that returns NaN weights         -> FAILED "diverged at epoch 1: the final network's ..."
 4 an exploding learning rate (1e30)         -> FAILED "diverged at epoch 1: ..."
 5 worker os._exit(3)                        -> FAILED "... exited with code 3 ..." (driver's failed.json)
 6 worker SIGKILL                            -> FAILED "... killed by signal 9 (SIGKILL) ..."
 7 worker segfault                           -> FAILED "... killed by signal 11 (SIGSEGV) ..."
 8 full disk writing the result              -> FAILED "No space left on device"
 9 full disk writing result and failure record -> FAILED, failure recorded by the driver
10 a cell that never returns (local worker)  -> FAILED "timed out after N s", the next cell runs
11 a cell deaf to the timer (native code)    -> killed by the driver, FAILED "timed out after N s"
12 a cell that never returns (serial backend) -> FAILED "timed out after N s"
13 a cell that never returns under `run --time-limit` -> exit 1, MLflow run FAILED "timed out after N s"
14 a tampered metrics.json (6 variants)      -> reported invalid, recomputed, old run retired (KILLED)
15 a kill between the result and the run's end (run left RUNNING) -> reconciled, cell skipped as done
16 no calibrated cell time yet / long cells  -> the default time limit scales with the longest cell
"""

from __future__ import annotations

import json
import os
import pickle
import textwrap
import uuid
from pathlib import Path

import pytest

from benchmark.core.config import RunConfig
from benchmark.core.paths import METRICS_FILE
from benchmark.core.tracking import TrackingSettings
from benchmark.study.cells import Cell
from benchmark.study.profiles import ExecutorSettings
from benchmark.study.scheduler import FAILED_FILE, run_study
from tests.conftest import mlflow_runs


def _tiny(method: str = "dense", seed: int = 0) -> RunConfig:
    cfg = RunConfig(method=method, seed=seed)
    cfg.model.arch, cfg.train.epochs, cfg.data.input_size = "test_resnet", 1, 8
    cfg.measure.latency_repeats, cfg.measure.latency_warmup, cfg.measure.latency_batch_sizes = 1, 0, [1]
    return cfg


def _plugin(folder: Path, body: str, monkeypatch) -> str:
    """Register a method whose body is `body` (indented under `def method(ctx):`); returns its name."""
    from benchmark.cell.plugins import discover

    name = f"fault_{uuid.uuid4().hex[:8]}"
    folder.mkdir(parents=True, exist_ok=True)
    code = textwrap.dedent(f"""
        import os, signal, time, errno
        import torch
        from benchmark.api import register_method
        from benchmark.cell.spec import MethodResult

        @register_method("{name}", citation="test", granularity="structured", schedule="during_training")
        def method(ctx):
    """) + textwrap.indent(textwrap.dedent(body), "    ")
    (folder / f"{name}.py").write_text(code)
    monkeypatch.setenv("PRUNING_BENCH_PLUGINS", str(folder))  # worker processes find it too
    discover([folder])
    return name


def _plugins(folder: Path, bodies: dict[str, str], monkeypatch) -> dict[str, str]:
    """Several plugin methods at once: {key: body} -> {key: method name}."""
    return {key: _plugin(folder, body, monkeypatch) for key, body in bodies.items()}


def _study(tmp_path, cells, uri=None, **executor):
    executor = {"backend": "local", "workers": 2, **executor}
    tracking = TrackingSettings(uri=uri) if uri else TrackingSettings(enabled=False)
    return run_study("faults", cells, ExecutorSettings(**executor), tracking, lock_folder=tmp_path)


def _check_consistent(cells, uri):
    """Every cell is finished (metrics.json, one FINISHED run) or failed (failed.json, no metrics.json,
    no FINISHED or RUNNING run); no temporary file is left anywhere."""
    runs = [r for r in mlflow_runs(uri) if r.data.tags.get("kind") != "study"] if uri else []
    for cell in cells:
        finished, failed = (cell.out / METRICS_FILE).is_file(), (cell.out / FAILED_FILE).is_file()
        assert finished != failed, cell.out
        assert not [p for p in cell.out.iterdir() if p.name.endswith(".tmp")]
        if uri:
            mine = [r for r in runs if r.data.tags.get("config_hash") == _hash(cell)]
            states = sorted(r.info.status for r in mine)
            if finished:
                run_id = json.loads((cell.out / METRICS_FILE).read_text())["mlflow_run_id"]
                assert [r.info.run_id for r in mine if r.info.status == "FINISHED"] == [run_id]
            else:
                assert "FINISHED" not in states and "RUNNING" not in states, states
    assert all(r.info.status != "RUNNING" for r in runs)


def _hash(cell) -> str:
    from benchmark.cell.runner import identify

    return identify(cell.config).config_hash


def _failure(cell) -> str:
    return json.loads((cell.out / FAILED_FILE).read_text())["error"]


# -- checkpoints never run code -------------------------------------------------------------------------


class _Plant:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_planted_pickle_in_the_checkpoint_store_is_not_executed(tmp_path, monkeypatch):
    from benchmark.cell.context import checkpoint_path
    from benchmark.cell.runner import identify, run_cell

    monkeypatch.setenv("BENCHMARK_CHECKPOINTS", str(tmp_path / "ckpt"))
    cfg = _tiny("l1_filter")
    cfg.method_args = {"sparsity": 0.5, "finetune_epochs": 1}
    path = checkpoint_path(identify(cfg).config)
    path.parent.mkdir(parents=True)
    marker = tmp_path / "pwned"
    path.write_bytes(pickle.dumps(_Plant(marker)))
    path.with_suffix(".json").write_text(json.dumps({"train_seconds": 0.0, "digest": "x"}))
    metrics = run_cell(cfg, tmp_path / "out", TrackingSettings(enabled=False), progress=False)
    assert not marker.exists()  # the planted file was refused, not run
    assert metrics["status"] == "finished" and metrics["dense_checkpoint"] != "x"  # trained again, replaced


def test_a_planted_model_file_is_refused_by_the_loader(tmp_path):
    from benchmark.cell.checkpoint import NotLoadable, load_network

    marker = tmp_path / "pwned"
    import torch

    torch.save({"format": "x", "payload": _Plant(marker)}, tmp_path / "model.pt")
    with pytest.raises(NotLoadable):
        load_network(tmp_path / "model.pt")
    assert not marker.exists()


# -- faults inside a worker: one study, one cell per fault ------------------------------------------------

NAN_WEIGHTS = """
ctx.train(ctx.model, epochs=1)
with torch.no_grad():
    next(ctx.model.parameters()).fill_(float("nan"))
return MethodResult(ctx.model)
"""

ENOSPC = """
import benchmark.cell.runner as runner, benchmark.study.backends as backends

def full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")

runner.write_json_atomic = full  # the result cannot be written
if {both}:
    backends.write_json_atomic = full  # nor the failure record
ctx.train(ctx.model, epochs=1)
return MethodResult(ctx.model)
"""

DEAD = {
    "exit": ("os._exit(3)", "the worker process exited with code 3 before the cell recorded a result"),
    "sigkill": (
        "os.kill(os.getpid(), signal.SIGKILL)",
        "the worker process was killed by signal 9 (SIGKILL) before the cell recorded a result",
    ),
    "segfault": (
        "os.kill(os.getpid(), signal.SIGSEGV)",
        "the worker process was killed by signal 11 (SIGSEGV) before the cell recorded a result",
    ),
}


def test_faults_in_workers_each_fail_only_their_own_cell(tmp_path, mlflow_uri, monkeypatch):
    """Divergence (NaN weights, an exploding learning rate), dead workers (exit, SIGKILL, segfault) and a
    full disk (the result; the result and the failure record) beside one healthy cell, in one study."""
    from benchmark.study.aggregate import cell_row

    bodies = {"nan": NAN_WEIGHTS, **{k: body for k, (body, _) in DEAD.items()}}
    bodies |= {"full": ENOSPC.format(both=False), "full-both": ENOSPC.format(both=True)}
    names = _plugins(tmp_path / "plugins", bodies, monkeypatch)
    exploding = _tiny(seed=1)
    exploding.train.lr = 1e30  # finite, so the config is fine; training is not
    cells = {key: Cell(_tiny(name), tmp_path / key, name) for key, name in names.items()}
    cells |= {"lr": Cell(exploding, tmp_path / "lr", "dense"), "good": Cell(_tiny(), tmp_path / "good", "dense")}
    outcome = _study(tmp_path, list(cells.values()), mlflow_uri)
    assert outcome.finished == 1 and len(outcome.failed) == len(cells) - 1, outcome
    failure = {key: _failure(cell) for key, cell in cells.items() if key != "good"}
    assert failure["nan"].startswith("diverged at epoch 1: the final network's"), failure["nan"]
    assert failure["lr"].startswith("diverged at epoch 1: "), failure["lr"]
    for key, (_, message) in DEAD.items():
        assert failure[key] == message  # and "out of memory" only when the OOM killer did it
        assert cell_row(cells[key])["status"] == "failed" and cell_row(cells[key])["error"] == message
    for key in ("full", "full-both"):
        assert "No space left on device" in failure[key], failure[key]
        assert ("could not be written" in failure[key]) == (key == "full-both")  # then the driver wrote it
    _check_consistent(list(cells.values()), mlflow_uri)
    errors = {r.data.tags.get("config_hash"): r.data.tags.get("error", "") for r in mlflow_runs(mlflow_uri)}
    assert "diverged at epoch 1" in errors[_hash(cells["nan"])]


# -- time limits -------------------------------------------------------------------------------------------

HANG = """
while True:
    time.sleep(0.1)
"""

DEAF_HEADER = "import signal, time\nfrom benchmark.api import register_method\n"
# Deaf from the moment the worker imports it (inside the cell's timer), as native code stuck in a call would be.
DEAF = """
import multiprocessing
if multiprocessing.current_process().name.startswith("{name} "):
    signal.signal(signal.SIGALRM, signal.SIG_IGN)

@register_method("{name}", citation="test", granularity="structured", schedule="during_training")
def method(ctx):
    while True:
        time.sleep(0.1)
"""


def test_a_hanging_cell_and_one_deaf_to_the_timer_are_stopped_and_the_study_goes_on(tmp_path, mlflow_uri, monkeypatch):
    from benchmark.cell.plugins import discover

    monkeypatch.setattr("benchmark.study.backends.HARD_LIMIT_GRACE", 1.0)
    hang = _plugin(tmp_path / "plugins", HANG, monkeypatch)
    deaf = f"fault_{uuid.uuid4().hex[:8]}"
    (tmp_path / "plugins" / f"{deaf}.py").write_text(DEAF_HEADER + DEAF.format(name=deaf))
    discover([tmp_path / "plugins"])
    cells = [Cell(_tiny(hang), tmp_path / "hang", hang), Cell(_tiny(deaf), tmp_path / "deaf", deaf)]
    limit = 6  # the deaf cell opens its MLflow run before limit + grace, even on a busy machine
    outcome = _study(tmp_path, cells, mlflow_uri, workers=1, cell_timeout=limit)  # one after the other
    message = f"timed out after {limit} s"
    assert outcome.finished == 0 and sorted(outcome.failed) == sorted((c.label, message) for c in cells)
    assert _failure(cells[0]) == _failure(cells[1]) == message
    _check_consistent(cells, mlflow_uri)
    (run,) = [r for r in mlflow_runs(mlflow_uri) if r.data.tags.get("config_hash") == _hash(cells[1])]
    assert run.info.status == "FAILED" and run.data.tags["error"] == message  # closed by the driver


def test_a_cell_that_never_returns_in_the_serial_backend_is_stopped(tmp_path, mlflow_uri, monkeypatch):
    hang = _plugin(tmp_path / "plugins", HANG, monkeypatch)
    cells = [Cell(_tiny(hang), tmp_path / "hang", hang)]
    outcome = _study(tmp_path, cells, mlflow_uri, backend="serial", cell_timeout=3)
    assert outcome.failed == [(cells[0].label, "timed out after 3 s")]
    assert _failure(cells[0]) == "timed out after 3 s"
    _check_consistent(cells, mlflow_uri)


def test_run_time_limit_stops_a_cell_that_never_returns(tmp_path, mlflow_uri, monkeypatch):
    from tests.conftest import TINY_ARGS, run_cli_here

    hang = _plugin(tmp_path / "plugins", HANG, monkeypatch)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    proc = run_cli_here(
        "run", "--method", hang, "--arch", "test_resnet", "--out", str(out), "--time-limit", "2", *TINY_ARGS
    )
    assert proc.returncode == 1 and proc.stderr.strip() == "error: the cell failed: timed out after 2 s", proc.stderr
    assert not out.exists()  # nothing half-written
    (run,) = mlflow_runs(mlflow_uri)
    assert run.info.status == "FAILED" and run.data.tags["error"].endswith("timed out after 2 s")


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "soon"])
def test_run_time_limit_must_be_seconds(value, monkeypatch, tmp_path):
    from tests.conftest import TINY_ARGS, run_cli_here

    monkeypatch.chdir(tmp_path)
    proc = run_cli_here("run", "--out", str(tmp_path / "o"), "--no-track", "--time-limit", value, *TINY_ARGS)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "--time-limit" in lines[0], proc.stderr
    assert not (tmp_path / "o").exists()


def test_the_default_time_limit_scales_with_the_longest_finished_cell():
    from benchmark.study.scheduler import TIMEOUT_FACTOR, TIMEOUT_FLOOR, _Study

    study = _Study("x", [], ExecutorSettings(), TrackingSettings(enabled=False), False, "x", None)
    assert study.time_limit() is None  # nothing to scale by yet
    study.longest = 10 * TIMEOUT_FLOOR
    assert study.time_limit() == TIMEOUT_FACTOR * 10 * TIMEOUT_FLOOR
    study.longest = 1.0
    assert study.time_limit() == TIMEOUT_FLOOR
    study.executor.cell_timeout = 0  # off
    assert study.time_limit() is None


# -- results and MLflow agree; tampered results ------------------------------------------------------------

TAMPER = {
    "top1-above-100": lambda m: {**m, "top1": 150.0},
    "top1-negative": lambda m: {**m, "top1": -1.0},
    "rate-above-1": lambda m: {**m, "param_pruning_rate": 2.0},
    "key-missing": lambda m: {k: v for k, v in m.items() if k != "top5"},
    "top1-text": lambda m: {**m, "top1": "97"},
    "top5-below-top1": lambda m: {**m, "top5": m["top1"] - 10},
}


def test_tampered_results_and_a_run_a_kill_left_open_are_repaired_with_one_finished_run(tmp_path, mlflow_uri):
    """Six tamperings of a metrics.json, each reported invalid (the last one is then recomputed and its old
    run retired), and one result whose run a kill left RUNNING (reconciled, not recomputed)."""
    from mlflow.tracking import MlflowClient

    from benchmark.study.aggregate import cell_row

    tampered, left_open = Cell(_tiny(), tmp_path / "tampered", "dense"), Cell(_tiny(seed=1), tmp_path / "open", "dense")
    new = Cell(_tiny(seed=2), tmp_path / "new", "dense")
    _study(tmp_path, [tampered, left_open], mlflow_uri)
    path = tampered.out / METRICS_FILE
    original = json.loads(path.read_text())
    for key, tamper in TAMPER.items():
        path.write_text(json.dumps(tamper(original)))
        row = cell_row(tampered)
        assert row["status"] == "failed" and row["error"].startswith("invalid result in metrics.json"), key
    run_id = json.loads((left_open.out / METRICS_FILE).read_text())["mlflow_run_id"]
    MlflowClient(mlflow_uri).update_run(run_id, status="RUNNING")  # killed between the result and the run's end

    cells = [tampered, left_open, new]
    again = _study(tmp_path, cells, mlflow_uri)
    assert (again.finished, again.skipped) == (2, 1)  # the tampered cell is never skipped as done
    _check_consistent(cells, mlflow_uri)
    mine = [r for r in mlflow_runs(mlflow_uri) if r.data.tags.get("config_hash") == _hash(tampered)]
    retired = [r for r in mine if r.info.status == "KILLED"]
    assert len(mine) == 2 and len(retired) == 1 and "superseded by run" in retired[0].data.tags["retired"]
