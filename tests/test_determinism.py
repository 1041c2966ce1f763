"""A cell's numbers depend on its configuration only: not on how many cells ran beside it, nor on
whether it ran before. Timings (seconds, latencies, speed-ups) are measurements and are left out."""

import json

from benchmark.cell.runner import TrackingSettings, run_cell
from benchmark.study.cells import dense_cells, method_cells
from benchmark.study.profiles import ExecutorSettings, get_profile, load_params
from benchmark.study.scheduler import run_study

TIMING = ("seconds", "latency", "speedup", "finished_at", "mlflow_run_id", "git_commit", "matched_from", "twin_from")


def _numbers(metrics: dict) -> dict:
    """The metrics without timings and provenance (paths, run ids), recursively."""
    if isinstance(metrics, dict):
        return {k: _numbers(v) for k, v in metrics.items() if not any(t in k for t in TIMING)}
    return metrics


def test_the_same_cell_twice_gives_identical_metrics(tmp_path, tiny_cfg):
    cfg = tiny_cfg
    cfg.method, cfg.model.arch, cfg.train.epochs = "edropout", "test_resnet", 2
    first = run_cell(cfg, tmp_path / "a", TrackingSettings(enabled=False), progress=False)
    again = run_cell(cfg, tmp_path / "b", TrackingSettings(enabled=False), progress=False)
    assert first["config"]["train"]["threads"] == 1  # recorded in the cell's configuration
    assert _numbers(first) == _numbers(again)
    assert first["generations"] > 0 and first["top1"] > 0


def test_one_and_two_workers_compute_the_same_smoke_study(tmp_path, monkeypatch):
    """The shipped smoke profile (every method and control), once in one process and once with two workers."""
    profile = get_profile(load_params(), "smoke")
    results = {}
    for name, executor in (("serial", ExecutorSettings(backend="serial")), ("two", ExecutorSettings(workers=2))):
        root = tmp_path / name
        monkeypatch.setenv("BENCHMARK_RESULTS", str(root))
        monkeypatch.setenv("BENCHMARK_CHECKPOINTS", str(root / "checkpoints"))
        for stage, cells in (("dense", dense_cells(profile, root)), ("cells", method_cells(profile, root))):
            outcome = run_study(stage, cells, executor, TrackingSettings(enabled=False), lock_folder=root)
            assert outcome.failed == [], outcome.failed
        results[name] = {
            str(p.parent.relative_to(root)): _numbers(json.loads(p.read_text())) for p in root.rglob("metrics.json")
        }
    expected = len(dense_cells(profile, tmp_path)) + len(method_cells(profile, tmp_path))
    assert len(results["serial"]) == expected and results["serial"].keys() == results["two"].keys()
    for cell, numbers in results["serial"].items():
        assert numbers == results["two"][cell], cell


def test_a_post_training_cell_records_its_dense_start_and_a_rebuilt_one_is_identical(tmp_path, tiny_cfg, monkeypatch):
    import torch

    from benchmark.cell.checkpoint import load_network
    from benchmark.cell.context import checkpoint_path, weights_digest
    from benchmark.cell.runner import identify, is_done

    monkeypatch.setenv("BENCHMARK_CHECKPOINTS", str(tmp_path / "ckpt"))
    cfg = tiny_cfg
    cfg.method, cfg.model.arch = "l1_filter", "test_resnet"
    cfg.method_args = {"sparsity": 0.5, "finetune_epochs": 1}
    first = run_cell(cfg, tmp_path / "a", TrackingSettings(enabled=False), progress=False)
    stored = checkpoint_path(identify(cfg).config)
    assert first["dense_checkpoint"] == weights_digest(load_network(stored))
    for path in (stored, stored.with_suffix(".json")):
        path.unlink()  # the dense network is rebuilt: identically, so the same cell gives the same numbers
    again = run_cell(cfg, tmp_path / "b", TrackingSettings(enabled=False), progress=False)
    assert _numbers(first) == _numbers(again)
    assert is_done(tmp_path / "a", identify(cfg))
    # a different dense network in the store: the cell that started from the old one is no longer done
    model = load_network(stored)
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    meta = stored.with_suffix(".json")
    record = json.loads(meta.read_text())
    meta.write_text(json.dumps({**record, "digest": weights_digest(model)}))
    assert not is_done(tmp_path / "a", identify(cfg))


def test_equal_budget_gives_every_method_the_same_total_epochs(tmp_path, monkeypatch):
    """Read from the cells: dense + pruning + fine-tuning epochs equal train.epochs for every method
    under 'equal'; under 'paper' post-training methods get the fine-tuning on top."""
    monkeypatch.setenv("BENCHMARK_CHECKPOINTS", str(tmp_path / "ckpt"))
    methods = ["dense", "edropout", "edropout_scratch", "l1_filter", "snip", "imp", "slimming"]
    totals = {}
    for budget in ("equal", "paper"):
        params = {
            "profiles": {
                "b": {
                    "datasets": ["digits"],
                    "archs": ["test_resnet"],
                    "seeds": [0],
                    "epochs": 4,
                    "methods": methods,
                    "operating_points": [0.5],
                    "set": {
                        "train.budget": budget,
                        "data.input_size": 8,
                        "measure.latency_repeats": 1,
                        "measure.latency_batch_sizes": [1],
                    },
                }
            }
        }
        profile = get_profile(params, "b")
        root = tmp_path / budget
        monkeypatch.setenv("BENCHMARK_RESULTS", str(root))
        for stage, cells in (("dense", dense_cells(profile, root)), ("cells", method_cells(profile, root))):
            outcome = run_study(
                stage, cells, ExecutorSettings(workers=2), TrackingSettings(enabled=False), lock_folder=root
            )
            assert outcome.failed == [], outcome.failed
        metrics = [json.loads(p.read_text()) for p in root.rglob("metrics.json")]
        assert sorted(m["method"] for m in metrics) == sorted(methods)
        assert {m["budget"] for m in metrics} == {budget}
        totals[budget] = {m["method"]: m["total_train_epochs"] for m in metrics}
    assert set(totals["equal"].values()) == {4}
    assert totals["paper"]["l1_filter"] == 4 + 2 and totals["paper"]["slimming"] == 4 + 2
    assert totals["paper"]["edropout"] == totals["paper"]["snip"] == totals["paper"]["dense"] == 4
