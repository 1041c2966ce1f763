"""MAC counting for every timm family: torch-pruning's counter leaves ViT/DeiT linear layers empty
(None), which `count_macs` fills from output shapes; cross-checked with torch's own FlopCounterMode.
Structured methods on ViTs: only the MLP hidden units are pruned (the network keeps running), and a
rate beyond what they allow, or an arch torch-pruning cannot prune, is refused before training."""

from __future__ import annotations

import math
import time

import pytest
import torch
import torch_pruning as tp
from torch.utils.flop_counter import FlopCounterMode

from benchmark.cell import models
from benchmark.cell.measure import count_macs, count_params, layer_macs
from benchmark.cell.runner import TrackingSettings, run_cell
from benchmark.cell.structured import _apply_ratio, reachable_rate
from benchmark.core.config import ModelConfig, RunConfig
from benchmark.core.errors import UserError


def _build(arch: str, size: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return models.create_model(ModelConfig(arch=arch), num_classes=10, in_chans=1, input_size=size).eval()


@pytest.mark.parametrize("arch", ["test_resnet", "test_vit"])
def test_conv_and_linear_macs_agree_with_torch_flop_counter(arch):
    model = _build(arch, 32)
    x = torch.zeros(1, 1, 32, 32)
    with FlopCounterMode(display=False) as counter:
        model(x)
    ops = {str(op): n for op, n in counter.get_flop_counts()["Global"].items()}
    matmul = sum(n for op, n in ops.items() if op in ("aten.convolution", "aten.addmm", "aten.mm", "aten.bmm"))
    assert sum(layer_macs(model, x).values()) == matmul // 2  # 2 FLOPs per multiply-accumulate
    total = count_macs(model, 1, 32)
    assert abs(total - counter.get_total_flops() / 2) / total < 0.05  # norms/activations aside


def test_vit_is_built_for_the_input_size_and_its_sparse_macs_count():
    model = _build("test_vit", 32)
    assert models.takes_img_size("test_vit") and not models.takes_img_size("test_resnet")
    assert tuple(model.patch_embed.img_size) == (32, 32)
    dense = count_macs(model, 1, 32, nonzero=True)
    assert dense == count_macs(model, 1, 32) > 0
    fc = model.blocks[0].mlp.fc1
    per_layer = layer_macs(model, torch.zeros(1, 1, 32, 32))[fc]
    with torch.no_grad():
        fc.weight[: fc.out_features // 2] = 0  # half of one linear layer's weights
    # half of that layer's MACs (torch-pruning's own count where it has one, which adds the bias)
    assert dense - count_macs(model, 1, 32, nonzero=True) == pytest.approx(per_layer / 2, rel=0.01)


# -- structured pruning of ViTs ----------------------------------------------------------------------


def test_structured_pruning_of_a_vit_cuts_only_mlp_hidden_units_and_still_runs():
    pruned, full = _build("test_vit", 32), _build("test_vit", 32)
    l1 = tp.importance.MagnitudeImportance(p=1, normalizer=None, group_reduction="first")
    _apply_ratio(pruned, torch.zeros(1, 1, 32, 32), l1, 0.5, False, None, None, final=True)  # one pass at ratio 0.5
    widths = {n: (x.in_features, x.out_features) for n, x in full.named_modules() if isinstance(x, torch.nn.Linear)}
    after = {n: (x.in_features, x.out_features) for n, x in pruned.named_modules() if isinstance(x, torch.nn.Linear)}
    changed = {n for n in widths if after[n] != widths[n]}
    assert changed and all(n.endswith(("mlp.fc1", "mlp.fc2")) for n in changed), changed  # only MLP hidden units
    for block in pruned.blocks:  # fc1's outputs and fc2's inputs went together; the embedding width stayed
        assert block.mlp.fc1.out_features == block.mlp.fc2.in_features < full.blocks[0].mlp.fc1.out_features
        assert block.mlp.fc2.out_features == block.attn.qkv.in_features == pruned.embed_dim == full.embed_dim
    assert pruned(torch.zeros(2, 1, 32, 32)).shape == (2, 10)  # timm's Attention still reshapes by num_heads


def test_the_reachable_rate_of_a_vit_is_what_its_mlp_hidden_units_hold():
    model = _build("test_vit", 32)
    x = torch.zeros(1, 1, 32, 32)
    hidden = sum(b.mlp.fc1.weight.numel() + b.mlp.fc1.bias.numel() + b.mlp.fc2.weight.numel() for b in model.blocks)
    reachable = reachable_rate(model, x)
    # every MLP cut to its last 5% of hidden units: just under the MLPs' share of the parameters
    assert 0.9 * hidden / count_params(model)["params"] < reachable < hidden / count_params(model)["params"]
    assert reachable_rate(_build("test_resnet", 32), x) > 0.95  # a CNN: nearly every channel group


def _vit_cfg(method: str, **method_args) -> RunConfig:
    cfg = RunConfig(method=method)
    cfg.model.arch = "test_vit"
    cfg.train.epochs = 1
    cfg.data.input_size = 32
    cfg.measure.latency_repeats = 1
    cfg.measure.latency_warmup = 1
    cfg.measure.latency_batch_sizes = [1]
    cfg.method_args = method_args
    return cfg


def test_l1_filter_on_test_vit_finishes_with_macs_and_a_smaller_network(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCHMARK_CHECKPOINTS", str(tmp_path / "checkpoints"))
    dense = run_cell(_vit_cfg("dense"), tmp_path / "dense", TrackingSettings(enabled=False), progress=False)
    cfg = _vit_cfg("l1_filter", sparsity=0.3, finetune_epochs=1)
    m = run_cell(cfg, tmp_path / "l1", TrackingSettings(enabled=False), progress=False)
    assert dense["status"] == m["status"] == "finished"
    assert m["param_pruning_rate"] == pytest.approx(0.3, abs=0.01)
    assert m["params"] < dense["params"] and 0 < m["macs"] < dense["macs"]
    assert math.isfinite(m["top1"])


@pytest.mark.parametrize(
    ("arch", "sparsity", "problem"),
    [
        ("test_vit", 0.9, "at most 0.[0-9]+ .*only the MLP hidden units"),
        ("test_nfnet", 0.5, "structured pruning cannot handle arch 'test_nfnet': the pruned network no longer runs"),
    ],
)
def test_a_structured_cell_that_cannot_run_is_refused_before_training(tmp_path, monkeypatch, arch, sparsity, problem):
    monkeypatch.setenv("BENCHMARK_CHECKPOINTS", str(tmp_path / "checkpoints"))
    cfg = _vit_cfg("l1_filter", sparsity=sparsity, finetune_epochs=1)
    cfg.model.arch = arch
    start = time.perf_counter()
    with pytest.raises(UserError, match=problem) as refused:
        run_cell(cfg, tmp_path / "cell", TrackingSettings(enabled=False), progress=False)
    assert "\n" not in str(refused.value)
    assert not (tmp_path / "checkpoints").exists() or not any((tmp_path / "checkpoints").iterdir())  # no dense run
    assert not (tmp_path / "cell" / "metrics.json").exists()
    assert time.perf_counter() - start < 30


def test_a_vit_round_trips_through_the_safe_checkpoint(tmp_path):
    """timm's ViT holds a str-subclass enum (patch_embed.output_fmt) that weights_only loading refuses."""
    from benchmark.cell import models
    from benchmark.cell.checkpoint import load_network, save_network
    from benchmark.core.config import ModelConfig

    cfg = ModelConfig()
    cfg.arch = "test_vit"
    model = models.create_model(cfg, 10, 1, 32).eval()
    save_network(model, tmp_path / "vit.pt", cfg, 10, 1, 32)
    loaded = load_network(tmp_path / "vit.pt").eval()
    x = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    assert torch.equal(model(x), loaded(x))
