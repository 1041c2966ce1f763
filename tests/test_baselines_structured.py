"""The structured baselines slimming, taylor and fpgm: end to end on ResNet-18/digits at 8x8, and what
makes each one itself (the L1 penalty on BN scales, gradient-based scores, per-layer ranking)."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn as nn
import torch_pruning as tp
from torch.utils.data import Subset

from benchmark.cell.checkpoint import load_network
from benchmark.cell.data import build_dataset
from benchmark.cell.models import create_model
from benchmark.cell.plugins import get_method
from benchmark.cell.runner import TrackingSettings, resolve, run_cell
from benchmark.cell.training import train
from benchmark.core.config import RunConfig
from benchmark.core.errors import UserError
from edropout.units import classifier_of

METHODS = ("slimming", "taylor", "fpgm")


def _cfg(method: str, **method_args) -> RunConfig:
    cfg = RunConfig(method=method)
    cfg.train.epochs = 1
    cfg.data.input_size = 8
    cfg.measure.latency_repeats = 2
    cfg.measure.latency_warmup = 1
    cfg.measure.latency_batch_sizes = [1, 4]
    cfg.method_args = method_args
    return cfg


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread here: on two shared cores, two threads each wait on the other's core."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One checkpoint store for the module: the dense network is trained once and shared."""
    root = tmp_path_factory.mktemp("structured")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BENCHMARK_CHECKPOINTS", str(root / "checkpoints"))
        yield root


@pytest.fixture(scope="module")
def dense(store):
    """The dense cell's metrics and its trained network (which also fills the checkpoint store)."""
    metrics = run_cell(_cfg("dense"), store / "dense", TrackingSettings(enabled=False), progress=False)
    (path,) = (store / "checkpoints").glob("dense-*.pt")
    return metrics, load_network(path)


@pytest.fixture(scope="module")
def cells(store, dense):
    """`run(method)`: that method's cell at sparsity 0.5 (run once per module) -> (metrics, final network)."""
    done: dict[str, tuple[dict, nn.Module]] = {}

    def run(method: str):
        if method not in done:
            cfg = _cfg(method, sparsity=0.5, finetune_epochs=1)
            metrics = run_cell(cfg, store / method, TrackingSettings(enabled=False), progress=False, save_model=True)
            done[method] = metrics, load_network(store / method / "model.pt")
        return done[method]

    return run


@pytest.mark.parametrize("method", METHODS)
def test_structured_baseline_end_to_end(method, dense, cells):
    dense_metrics, _ = dense
    m, model = cells(method)
    assert m["status"] == "finished" and m["method"] == method
    assert abs(m["param_pruning_rate"] - 0.5) <= 0.01, m["param_pruning_rate"]
    # physically shrunk, not masked: fewer parameters and fewer MACs than the dense network
    assert m["params"] < 0.51 * dense_metrics["params"]
    assert m["params"] == sum(p.numel() for p in model.parameters())
    assert m["macs"] < dense_metrics["macs"]
    assert math.isfinite(m["top1"]) and 0.0 <= m["top1"] <= 100.0
    assert m["finetune_seconds"] > 0 and m["prune_seconds"] > 0
    assert m["total_train_epochs"] == 2  # 1 epoch of (sparsity or dense) training + 1 of fine-tuning
    if method == "slimming":  # trains from scratch: no dense checkpoint, its own training counted
        assert m["dense_seconds"] == 0 and m["epochs"] == 2
        assert m["total_train_seconds"] == pytest.approx(
            m["sparsity_train_seconds"] + m["prune_seconds"] + m["finetune_seconds"]
        )
    else:  # post-training: the shared dense network, only fine-tuning ran in this cell
        assert m["dense_seconds"] > 0 and m["epochs"] == 1


def test_method_args_are_checked_before_running():
    slimming, taylor, fpgm = (get_method(name) for name in METHODS)
    assert slimming.check_args({}).extra == {"l1": 1e-4}
    assert taylor.check_args({}).extra == {"batches": 4}
    with pytest.raises(UserError, match="l1"):
        slimming.validate_args({"l1": -1.0})
    with pytest.raises(UserError, match="batches"):
        taylor.validate_args({"batches": 0})
    with pytest.raises(UserError, match="unknown method_args 'l1'"):
        fpgm.validate_args({"l1": 1e-4})


# -- slimming: the L1 penalty on BatchNorm scales ----------------------------------------------------------


def _bn_scales(model: nn.Module) -> torch.Tensor:
    return torch.cat([m.weight.detach().abs().flatten() for m in model.modules() if isinstance(m, nn.BatchNorm2d)])


def test_slimming_hook_adds_the_l1_subgradient():
    from baselines.slimming import BNL1Penalty

    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([0.5, -0.2, 0.0, 2.0]))
    model(torch.randn(2, 1, 5, 5)).sum().backward()
    before = model[1].weight.grad.clone()
    BNL1Penalty(0.1).after_backward(model)
    assert torch.allclose(model[1].weight.grad - before, torch.tensor([0.1, -0.1, 0.0, 0.1]))


def test_slimming_penalty_shrinks_bn_scales():
    from baselines.slimming import BNL1Penalty

    cfg, _ = resolve(_cfg("slimming"))
    bundle = build_dataset(cfg.data, cfg.seed)
    data = Subset(bundle.train, range(256))  # 4 steps
    torch.manual_seed(0)
    start = create_model(cfg.model, bundle.num_classes, bundle.in_chans, bundle.input_size)
    plain, penalised = copy.deepcopy(start), copy.deepcopy(start)
    empty = Subset(bundle.val, [])
    train(plain, data, empty, cfg.train, 0, bundle.num_classes, progress=False)
    train(penalised, data, empty, cfg.train, 0, bundle.num_classes, hooks=[BNL1Penalty(1e-2)], progress=False)
    shrunk, free = float(_bn_scales(penalised).mean()), float(_bn_scales(plain).mean())
    # lr 0.05 * l1 0.01 per step, carried on by momentum 0.9: about 4.5e-3 less after 4 steps
    assert shrunk < free - 2e-3, (shrunk, free)


@pytest.mark.parametrize("module", ["slimming", "taylor"])
def test_keep_best_protects_the_top_of_every_group(module):
    import importlib

    keep_best = importlib.import_module(f"baselines.{module}").KeepBest
    scores = keep_best(lambda group: torch.arange(40.0))(None)
    assert torch.isinf(scores).sum() == 2 and torch.isinf(scores[-2:]).all()  # ceil(5% of 40)
    assert torch.equal(scores[:-2], torch.arange(38.0))
    assert keep_best(lambda group: None)(None) is None


def test_global_ranking_cuts_a_weak_layer_instead_of_keeping_it_whole(dense):
    from baselines.slimming import KeepBest, importance

    model = copy.deepcopy(dense[1]).eval()
    with torch.no_grad():
        model.layer4[0].bn1.weight.mul_(1e-3)  # every channel of this layer is the least important
    example = torch.zeros(1, 1, 8, 8)

    def pruned_width(scorer) -> int:
        target = copy.deepcopy(model)
        tp.pruner.MetaPruner(
            target,
            example,
            importance=scorer,
            pruning_ratio=0.2,
            global_pruning=True,
            max_pruning_ratio=0.95,
            ignored_layers=[classifier_of(target)],
        ).step()
        return target.layer4[0].conv1.out_channels

    assert pruned_width(KeepBest(importance())) == 26  # cut to the best 5% of 512
    assert pruned_width(importance()) == 512  # torch-pruning alone skips the group: why KeepBest exists


# -- taylor: scores from gradients -------------------------------------------------------------------------


def _groups(model: nn.Module, example: torch.Tensor):
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=example)
    return list(graph.get_all_groups(ignored_layers=[classifier_of(model)], root_module_types=[nn.Conv2d, nn.Linear]))


def test_taylor_ranking_depends_on_gradients(dense):
    from baselines.taylor import gradient_pass, importance

    model = copy.deepcopy(dense[1]).eval()
    cfg, _ = resolve(_cfg("taylor"))
    bundle = build_dataset(cfg.data, cfg.seed)
    groups = _groups(model, torch.zeros(1, bundle.in_chans, 8, 8))
    assert len(groups) > 5

    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    zero = [importance()(g) for g in groups]
    assert all(s is not None and torch.count_nonzero(s) == 0 for s in zero)

    prepare = gradient_pass(bundle.train, 4, cfg.train.batch_size, cfg.seed)
    prepare(model)
    first = {n: p.grad.clone() for n, p in model.named_parameters()}
    scores = [importance()(g) for g in groups]
    assert all(torch.isfinite(s).all() and torch.count_nonzero(s) > 0 for s in scores)
    prepare(model)  # clears the previous gradients instead of adding to them
    assert all(torch.allclose(p.grad, first[n]) for n, p in model.named_parameters())

    gradient_pass(bundle.train, 4, cfg.train.batch_size, cfg.seed + 1)(model)  # other batches, other ranking
    other = [importance()(g) for g in groups]
    assert any(not torch.allclose(a, b) for a, b in zip(scores, other))


# -- fpgm: the same fraction in every layer ------------------------------------------------------------------


def _widths(model: nn.Module) -> dict[str, int]:
    head = classifier_of(model)
    return {n: m.out_channels for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and m is not head}


def test_fpgm_prunes_every_layer_group_by_the_same_fraction(dense, cells):
    _, model = cells("fpgm")
    before, after = _widths(dense[1]), _widths(model)
    assert before.keys() == after.keys()
    kept = {name: after[name] / before[name] for name in before}
    assert all(after[name] < before[name] for name in before), kept  # every layer pruned, none skipped
    # per-layer ranking keeps int(C * (1 - ratio)) of C channels: equal fractions up to one channel
    assert max(kept.values()) - min(kept.values()) <= 1.0 / min(before.values()) + 1e-9, kept
