"""SNIP, SynFlow, LAMP and IMP: end-to-end cells on ResNet-18/digits and the behaviour that defines each."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn

from benchmark.cell.models import create_model
from benchmark.cell.plugins import get_method
from benchmark.cell.pruning import prunable_weights, weights_to_remove
from benchmark.cell.runner import TrackingSettings, run_cell
from benchmark.core.config import ModelConfig
from benchmark.core.errors import UserError

# End to end with the method's own schedule; snip, synflow and lamp reach their rate end to end in
# tests/test_every_method.py, so only IMP's rounds and rewinding run here.
CELLS = {
    "imp": ({"rewind_epoch": 1, "rounds": 2}, 2),
}


def _resnet18() -> nn.Module:
    torch.manual_seed(0)
    return create_model(ModelConfig(), num_classes=10, in_chans=1, input_size=8)


@pytest.mark.parametrize("method", list(CELLS))
def test_cell_reaches_the_target_rate_end_to_end(method, tmp_path, tiny_cfg, monkeypatch):
    monkeypatch.setenv("BENCHMARK_CHECKPOINTS", str(tmp_path / "checkpoints"))
    extra, epochs = CELLS[method]
    tiny_cfg.method = method
    tiny_cfg.train.epochs = epochs
    tiny_cfg.method_args = {"sparsity": 0.5, "finetune_epochs": 1, **extra}
    metrics = run_cell(tiny_cfg, tmp_path / "cell", TrackingSettings(enabled=False), progress=False)
    assert metrics["status"] == "finished"
    assert abs(metrics["param_pruning_rate"] - 0.5) <= 0.01
    assert abs(metrics["params_nonzero"] / metrics["params"] - 0.5) <= 0.01
    assert metrics["macs_nonzero"] < metrics["macs"]
    assert metrics["total_train_seconds"] > 0
    if method == "imp":  # 2 dense epochs, then 2 rounds of 1 retraining epoch
        assert metrics["epochs"] == metrics["total_train_epochs"] == 4
        assert metrics["rounds"] == 2 and metrics["rewind_epoch"] == 1


@pytest.mark.parametrize(
    "method, args",
    [
        ("snip", {"batches": 0}),
        ("snip", {"batches": "two"}),
        ("synflow", {"iterations": 0}),
        ("synflow", {"iterations": 1.5}),
        ("imp", {"rounds": 0}),
        ("imp", {"rewind_epoch": -1}),
        ("lamp", {"rounds": 2}),
    ],
)
def test_bad_method_args_are_rejected_before_anything_runs(method, args):
    with pytest.raises(UserError, match="method_args"):
        get_method(method).validate_args(args)


# -- SNIP -----------------------------------------------------------------------------------------


def test_snip_scores_are_abs_gradient_times_weight():
    from baselines.snip import snip_scores

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    batches = [(torch.randn(5, 4), torch.randint(0, 3, (5,))) for _ in range(2)]
    before = copy.deepcopy(model.state_dict())

    scores = snip_scores(model, batches)

    by_hand = copy.deepcopy(model)
    for x, y in batches:  # the gradient summed over the mini-batches
        nn.functional.cross_entropy(by_hand(x), y).backward()
    assert list(scores) == [model[0], model[2]]
    for module, reference in zip(scores, [by_hand[0], by_hand[2]]):
        torch.testing.assert_close(scores[module], (reference.weight.grad * reference.weight).abs().detach())
    for name, value in model.state_dict().items():  # scoring leaves the network as it was
        assert torch.equal(value, before[name])
    assert all(p.grad is None for p in model.parameters())


def test_snip_ranks_weights_inside_zero_initialised_residual_branches():
    """timm zero-initialises each block's last BN scale; SNIP must still see those branches."""
    from baselines.snip import snip_scores

    model = _resnet18()
    assert not torch.any(model.layer1[0].bn2.weight)  # timm's zero_init_last
    batch = (torch.randn(8, 1, 8, 8), torch.arange(8))
    scores = snip_scores(model, [batch])
    assert all(torch.count_nonzero(s) > 0 for s in scores.values())
    assert not torch.any(model.layer1[0].bn2.weight)  # only the scoring copy changed


# -- LAMP -----------------------------------------------------------------------------------------


def test_lamp_scores_of_one_layer():
    from baselines.lamp import lamp_scores

    torch.testing.assert_close(
        lamp_scores(torch.tensor([1.0, 2.0, 3.0])), torch.tensor([1 / 14, 4 / 13, 9 / 9], dtype=torch.float64)
    )
    # order, sign and shape do not matter; the largest weight of a layer always scores 1
    torch.testing.assert_close(
        lamp_scores(torch.tensor([[3.0, -1.0], [-2.0, 0.0]])),
        torch.tensor([[1.0, 1 / 14], [4 / 13, 0.0]], dtype=torch.float64),
    )
    # equal magnitudes share the denominator (every v with w_v^2 >= w_u^2)
    torch.testing.assert_close(
        lamp_scores(torch.tensor([1.0, 1.0, 2.0])), torch.tensor([1 / 6, 1 / 6, 1.0], dtype=torch.float64)
    )


# -- SynFlow --------------------------------------------------------------------------------------


def test_synflow_is_data_free_and_leaves_the_network_unchanged():
    from baselines.synflow import synflow_masks, synflow_scores

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    before = copy.deepcopy(model.state_dict())
    zeros, noise = torch.zeros(1, 1, 8, 8), 100 * torch.randn(1, 1, 8, 8)
    a, b = synflow_scores(model, zeros), synflow_scores(model, noise)
    assert all(torch.equal(a[m], b[m]) for m in a)
    assert all(torch.count_nonzero(s) > 0 for s in a.values())
    k = weights_to_remove(model, 0.5)
    masks_a, masks_b = synflow_masks(model, zeros, k, 5), synflow_masks(model, noise, k, 5)
    assert all(torch.equal(masks_a[m], masks_b[m]) for m in masks_a)
    assert sum(int((~mask).sum()) for mask in masks_a.values()) == k
    for name, value in model.state_dict().items():  # signs and values restored (never changed)
        assert torch.equal(value, before[name])


def test_synflow_falls_back_to_float64_when_the_flow_overflows_float32():
    from baselines.synflow import synflow_masks, synflow_scores

    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 2))
    with torch.no_grad():
        for layer in model:
            layer.weight.fill_(1e15)  # R is about 1e46: beyond float32
    scores = synflow_scores(model, torch.zeros(1, 4))
    assert all(s.dtype == torch.float64 and torch.all(torch.isfinite(s)) and torch.all(s > 0) for s in scores.values())
    assert sum(int((~m).sum()) for m in synflow_masks(model, torch.zeros(1, 4), 10, 3).values()) == 10


def test_synflow_avoids_layer_collapse_at_90_percent():
    from baselines.synflow import synflow_masks

    model = _resnet18()
    example = torch.zeros(1, 1, 8, 8)
    k = weights_to_remove(model, 0.9)
    iterative = synflow_masks(model, example, k, iterations=10)
    assert sum(int((~mask).sum()) for mask in iterative.values()) == k
    assert all(int(mask.sum()) > 0 for mask in iterative.values())
    # The check has teeth: one-shot SynFlow removes whole layers of this network.
    one_shot = synflow_masks(model, example, k, iterations=1)
    assert any(int(mask.sum()) == 0 for mask in one_shot.values())


# -- IMP ------------------------------------------------------------------------------------------


def test_imp_round_targets_keep_the_same_fraction_each_round():
    from baselines.imp import round_targets

    assert round_targets(1000, 750, 2) == [500, 750]
    assert round_targets(1000, 875, 3) == [500, 750, 875]
    assert round_targets(1000, 0, 3) == [0, 0, 0]


def test_imp_rewinds_surviving_weights_and_keeps_masks():
    from baselines.imp import prune_and_rewind

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    snapshot = copy.deepcopy(model.state_dict())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)

    def train_a_little():
        for _ in range(3):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(torch.randn(16, 8)), torch.randint(0, 4, (16,))).backward()
            optimizer.step()

    train_a_little()
    trained = {m: m.weight.detach().abs().clone() for m in prunable_weights(model)}
    masks = prune_and_rewind(model, snapshot, 60)  # of 192 weights
    assert sum(int((~mask).sum()) for mask in masks.values()) == 60
    largest_dropped = max(float(trained[m][~mask].max()) for m, mask in masks.items() if (~mask).any())
    smallest_kept = min(float(trained[m][mask].min()) for m, mask in masks.items())
    assert largest_dropped <= smallest_kept  # global magnitude on the trained weights
    for index, module in ((0, model[0]), (2, model[2])):
        assert torch.equal(module.weight, snapshot[f"{index}.weight"] * masks[module])
        assert torch.equal(module.bias, snapshot[f"{index}.bias"])  # everything is rewound

    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    train_a_little()
    second = prune_and_rewind(model, snapshot, 120)
    assert sum(int((~mask).sum()) for mask in second.values()) == 120
    for module, mask in second.items():
        assert not torch.any(mask & ~masks[module])  # pruned weights stay pruned
        assert torch.equal(module.weight, snapshot[f"{0 if module is model[0] else 2}.weight"] * mask)


def test_synflow_threshold_masks_drop_exactly_the_lowest_scores():
    from baselines.synflow import _drop_lowest

    masks = _drop_lowest([torch.tensor([3.0, 1.0, -1.0]), torch.tensor([[2.0, 1.0], [1.0, 5.0]])], 3)
    assert masks[0].tolist() == [True, False, False]
    assert int((~masks[1]).sum()) == 1 and masks[1][0, 0] and masks[1][1, 1]  # one of the tied 1s goes
