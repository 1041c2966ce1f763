"""Every registered pruning method, checked the same way: it reaches the asked rate on ResNet-18."""

import pytest

from benchmark.cell.plugins import METHODS, discover
from benchmark.cell.runner import TrackingSettings, run_cell
from benchmark.core.config import RunConfig

discover()
PRUNING = [name for name in METHODS.names() if METHODS.get(name).takes_sparsity]  # EDropout and controls: own rate
FAST = {
    "synflow": {"iterations": 10},
    "imp": {"rounds": 1},
    "taylor": {"batches": 1},
    "thinet": {"samples": 200, "batches": 1},
}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return tmp_path_factory.mktemp("store")


# One rate per method, alternating (in name order) between 0.3 (checked right after pruning) and 0.7
# (checked after a fine-tuning epoch), so both paths run for structured and unstructured methods while
# the suite stays inside its time budget; tests/test_baselines_*.py check several rates per family.
CASES = [(name, 0.3 if i % 2 == 0 else 0.7) for i, name in enumerate(sorted(PRUNING))]


@pytest.mark.parametrize(("method", "sparsity"), CASES)
def test_method_reaches_the_target_rate_within_one_point(method, sparsity, store, monkeypatch):
    monkeypatch.setenv("BENCHMARK_CHECKPOINTS", str(store))  # one dense network for all post-training cells
    cfg = RunConfig(method=method)
    cfg.train.epochs, cfg.data.input_size = 1, 8
    cfg.measure.latency_repeats, cfg.measure.latency_warmup, cfg.measure.latency_batch_sizes = 1, 0, [1]
    # fine-tuning must keep the rate: checked at 0.7; at 0.3 the rate is checked right after pruning
    finetune = 1 if sparsity == 0.7 else 0
    cfg.method_args = {"sparsity": sparsity, "finetune_epochs": finetune, **FAST.get(method, {})}
    m = run_cell(cfg, store / f"{method}-{sparsity}", TrackingSettings(enabled=False), progress=False)
    assert abs(m["param_pruning_rate"] - sparsity) <= 0.01, m["param_pruning_rate"]
    assert m["param_pruning_rate"] == pytest.approx(1 - m["params_nonzero"] / m["dense_params"], abs=1e-6)
    if METHODS.get(method).granularity == "structured":  # physically smaller: the MACs and shapes show it
        assert m["params"] < m["dense_params"] and m["macs"] < m["dense_macs"]
    else:  # same shapes, zeros inside; the theoretical MACs show the gain
        assert m["params"] == m["dense_params"] and m["macs_nonzero"] < m["macs"]
    assert 0.0 <= m["top1"] <= 100.0


def test_the_registry_has_the_published_baselines():
    expected = {
        "dense",
        "random_structured",
        "random_unstructured",
        "global_magnitude",
        "layer_magnitude",
        "l1_filter",
        "slimming",
        "taylor",
        "snip",
        "synflow",
        "lamp",
        "fpgm",
        "imp",
        "thinet",
        "edropout",
    }
    assert expected <= set(METHODS.names())
