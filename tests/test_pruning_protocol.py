"""What pruning methods share: the dense start, the budget, the variants, the speed comparison."""

import copy

import pytest
import timm
import torch
import torch.nn as nn

from benchmark.cell.pruning import (
    magnitude_masks,
    masks_from_scores,
    prune_structured,
    shuffle_masks,
    shuffled_structure,
)
from benchmark.cell.runner import TrackingSettings, run_cell
from benchmark.core.config import RunConfig


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCHMARK_CHECKPOINTS", str(tmp_path / "checkpoints"))
    return tmp_path


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One checkpoint store for the tests that only need some trained dense network (trained once)."""
    root = tmp_path_factory.mktemp("shared")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BENCHMARK_CHECKPOINTS", str(root / "checkpoints"))
        yield root


def _cfg(method, **method_args):
    cfg = RunConfig(method=method)
    cfg.train.epochs, cfg.data.input_size = 2, 8
    cfg.measure.latency_repeats, cfg.measure.latency_warmup, cfg.measure.latency_batch_sizes = 2, 1, [1, 4]
    cfg.method_args = {"finetune_epochs": 1, **method_args}
    return cfg


def _run(cfg, tmp_path, name):
    return run_cell(cfg, tmp_path / name, TrackingSettings(enabled=False), progress=False)


def test_post_training_methods_share_one_dense_network(store):
    first = _run(_cfg("global_magnitude", sparsity=0.5), store, "a")
    assert first["epochs"] == 1 and first["total_train_epochs"] == 3  # 2 dense (trained here) + 1 fine-tune
    assert len(list((store / "checkpoints").glob("dense-*.pt"))) == 1
    second = _run(_cfg("l1_filter", sparsity=0.5), store, "b")
    assert second["dense_seconds"] == pytest.approx(first["dense_seconds"])  # reused, not retrained
    assert second["train_seconds"] < first["train_seconds"]


def test_the_dense_cell_fills_the_store(store):
    cfg = _cfg("dense")
    cfg.method_args = {}
    metrics = _run(cfg, store, "dense")
    (meta,) = (store / "checkpoints").glob("dense-*.json")
    pruned = _run(_cfg("global_magnitude", sparsity=0.3), store, "gm")
    assert pruned["dense_seconds"] == pytest.approx(metrics["train_seconds"], rel=0.2)
    assert pruned["epochs"] == 1  # only the fine-tuning epoch ran in this cell


def test_structured_results_carry_a_side_by_side_speed_comparison(shared):
    store = shared
    m = _run(_cfg("l1_filter", sparsity=0.5), store, "l1")
    assert m["dense_macs"] > m["macs"] and m["mac_reduction"] == pytest.approx(m["dense_macs"] / m["macs"])
    assert m["latency_speedup_b1"] == pytest.approx(m["dense_latency_ms_b1"] / m["latency_ms_b1"])
    assert m["speedup_per_mac_reduction_b1"] == pytest.approx(m["latency_speedup_b1"] / m["mac_reduction"])
    u = _run(_cfg("global_magnitude", sparsity=0.5), store, "gm")
    assert u["macs"] == u["dense_macs"] and u["macs_nonzero"] < u["macs"]  # same shape, fewer non-zero MACs
    assert u["theoretical_mac_reduction"] > 1.2


def _resnet():
    torch.manual_seed(0)
    return timm.create_model("resnet18", num_classes=10, in_chans=1)


def _widths(model):
    return {n: m.out_channels for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}


def test_shuffled_structure_keeps_widths_but_not_channels():
    from baselines.l1_filter import importance

    dense, x = _resnet(), torch.zeros(1, 1, 16, 16)
    pruned = copy.deepcopy(dense)
    prune_structured(pruned, x, importance(), 0.5, global_pruning=False)
    shuffled = shuffled_structure(dense, pruned, x, torch.Generator().manual_seed(0))
    assert _widths(shuffled) == _widths(pruned)
    assert not torch.equal(shuffled.conv1.weight, pruned.conv1.weight)


def test_round_to_gives_hardware_friendly_widths():
    from baselines.l1_filter import importance

    model = _resnet()
    prune_structured(model, torch.zeros(1, 1, 16, 16), importance(), 0.5, global_pruning=False, round_to=8)
    assert all(w % 8 == 0 for w in _widths(model).values()), _widths(model)


def test_shuffled_masks_keep_each_layers_count():
    model = _resnet()
    masks = magnitude_masks(model, 0.5, "global")
    shuffled = shuffle_masks(masks, torch.Generator().manual_seed(0))
    for module in masks:
        assert int(masks[module].sum()) == int(shuffled[module].sum())
    assert any(not torch.equal(masks[m], shuffled[m]) for m in masks)


def test_variants_run_end_to_end(shared):
    store = shared
    plain = _run(_cfg("global_magnitude", sparsity=0.5), store, "plain")
    for variant in ("shuffled", "reinit"):
        m = _run(_cfg("global_magnitude", sparsity=0.5, variant=variant), store, variant)
        assert m["variant"] == variant
        assert abs(m["param_pruning_rate"] - plain["param_pruning_rate"]) < 0.01
    s = _run(_cfg("l1_filter", sparsity=0.5, variant="shuffled"), store, "l1s")
    assert abs(s["param_pruning_rate"] - 0.5) < 0.01


def test_layer_scope_prunes_every_layer_evenly():
    scores = {nn.Linear(10, 10): torch.arange(100.0).view(10, 10), nn.Linear(10, 4): torch.arange(40.0).view(4, 10)}
    masks = masks_from_scores(scores, 70, "layer")
    assert [int((~m).sum()) for m in masks.values()] == [50, 20]
    masks = masks_from_scores(scores, 70, "global")
    assert sum(int((~m).sum()) for m in masks.values()) == 70
