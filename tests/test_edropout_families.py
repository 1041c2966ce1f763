"""EDropout across timm families: coverage records, DenseNet and ViT end to end, refusals in one line."""

from __future__ import annotations

import copy
import json
import time

import pytest
import timm
import torch
import torch.nn.functional as F
from timm.models.densenet import DenseNet

from edropout import Coverage, EDropout, EDropoutConfig, coverage, find_units

SIZE = 32


def _example(batch: int = 1) -> torch.Tensor:
    return torch.randn(batch, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(batch))


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


_COVERAGE: dict[str, tuple[torch.nn.Module, Coverage]] = {}


def _coverage(arch: str) -> tuple[torch.nn.Module, Coverage]:
    if arch not in _COVERAGE:
        model = timm.create_model(arch, pretrained=False, num_classes=10, in_chans=1)
        _COVERAGE[arch] = model, coverage(model, find_units(model, _example()))
    return _COVERAGE[arch]


@pytest.mark.parametrize(
    ("arch", "group", "reason"),
    [
        ("regnety_002", "s1.b1.conv1.conv", "grouped convolution s1.b1.conv2.conv (groups=3)"),
        ("regnety_002", "s1.b1.se.fc2", "grouped convolution s1.b1.conv2.conv (groups=3)"),
        ("convnext_atto", "stem.0", "LayerNorm2d stem.1 normalises"),
        ("convnext_atto", "stages.1.downsample.1", "LayerNorm2d stages.1.blocks.0.norm"),
    ],
)
def test_coverage_lists_the_known_skipped_groups_with_their_reason(arch, group, reason):
    model, record = _coverage(arch)
    assert reason in record.skipped[group]
    assert "\n" not in record.skipped[group]
    assert 0.0 < record.max_parameter_rate < 1.0
    assert record.prunable_groups > 0 and record.prunable_units >= record.prunable_groups
    assert record.total_parameters == _params(model)
    as_dict = json.loads(json.dumps(record.as_dict()))
    assert {"group": group, "reason": record.skipped[group]} in as_dict["skipped"]
    assert as_dict["max_parameter_rate"] == pytest.approx(record.max_parameter_rate)


def test_regnet_and_convnext_skip_what_the_issue_measured():
    _, regnet = _coverage("regnety_002")
    assert (regnet.prunable_groups, len(regnet.skipped)) == (18, 26)
    assert all("grouped convolution" in reason for reason in regnet.skipped.values())
    _, convnext = _coverage("convnext_atto")
    assert (convnext.prunable_groups, len(convnext.skipped)) == (12, 4)  # the MLP hidden units only


def _run(model: torch.nn.Module, batches: int = 2):
    """A short EDropout run through the controller; returns (controller, pruned, full, masked output, probe)."""
    ctrl = EDropout(model, _example(), epochs=1, config=EDropoutConfig(population=4, patience=None), seed=0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    gen = torch.Generator().manual_seed(1)
    for _ in range(batches):
        x, y = torch.randn(8, 1, SIZE, SIZE, generator=gen), torch.randint(0, 10, (8,), generator=gen)
        ctrl.before_step(x, y)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        ctrl.after_step(optimizer)
    probe = _example(4)
    with torch.no_grad():  # the masked network with the final state, before the shrink
        ctrl.masker.set_states(ctrl.best)
        masked = model.eval()(probe)
        trained = copy.deepcopy(model.state_dict())
    model.train()
    assert ctrl.end_epoch()  # the search stops after its one epoch and the network is shrunk
    pruned = ctrl.finalize()
    full = ctrl.full_network()
    return ctrl, pruned, full, masked, probe, trained


def _check_end_to_end(ctrl, pruned, full, masked, probe, trained, params_before):
    assert ctrl.shrunk
    assert _params(pruned) < params_before
    assert params_before - _params(pruned) == ctrl.removed_parameters()
    with torch.no_grad():
        torch.testing.assert_close(pruned.eval()(probe), masked, atol=1e-5, rtol=1e-4)  # removal == masking
        assert full.eval()(probe).shape == masked.shape
    assert _params(full) == params_before
    for name, value in full.state_dict().items():  # F: every unit on, nothing trained after the shrink
        assert torch.equal(value, trained[name]), name


def test_densenet_runs_end_to_end_and_its_full_network_is_rebuilt():
    """Concatenated features: the stem's and every dense layer's channels meet in one BatchNorm."""
    torch.manual_seed(0)
    model = DenseNet(growth_rate=8, block_config=(2, 3), num_classes=10, in_chans=1, bn_size=2)
    before = _params(model)
    _check_end_to_end(*_run(model), before)


def test_vit_runs_end_to_end_with_attention_heads_as_units():
    torch.manual_seed(0)
    model = timm.create_model("test_vit", pretrained=False, num_classes=10, in_chans=1, img_size=SIZE)
    before, heads = _params(model), [block.attn.num_heads for block in model.blocks]
    ctrl, *rest = result = _run(model)
    names = [g.name for g in ctrl.units.groups]
    assert [f"blocks.{i}.attn.heads" for i in range(len(heads))] == [n for n in names if n.endswith(".heads")]
    assert not any(name.endswith("attn.qkv") for name in ctrl.coverage.skipped)
    _check_end_to_end(*result, before)
    kept = {g.name: int(part.sum()) for g, part in zip(ctrl.units.groups, ctrl.units.split(ctrl.best))}
    for i, block in enumerate(rest[0].blocks):
        assert block.attn.num_heads == kept[f"blocks.{i}.attn.heads"]
        assert block.attn.qkv.out_features == 3 * block.attn.num_heads * block.attn.head_dim


def test_a_family_with_nothing_prunable_is_refused_in_one_line():
    model = timm.create_model("resnet50_gn", pretrained=False, num_classes=10, in_chans=1)
    with pytest.raises(ValueError) as refused:
        EDropout(model, _example(), epochs=1)
    message = str(refused.value)
    assert "\n" not in message
    assert "ResNet has no prunable units for EDropout" in message and "GroupNorm" in message


def test_an_architecture_whose_dependency_analysis_never_ends_is_refused_in_one_line_at_the_limit():
    """torch-pruning's group search loops forever on timm's CoAtNet; EDropout refuses it at the limit."""
    model = timm.create_model("test_coatnet", pretrained=False, num_classes=10, in_chans=1, img_size=SIZE)
    start = time.monotonic()
    with pytest.raises(ValueError) as refused:
        find_units(model, _example(), seconds=2)
    elapsed = time.monotonic() - start
    message = str(refused.value)
    assert "\n" not in message
    assert "cannot be pruned by EDropout" in message and "did not finish within 2 s" in message
    assert elapsed < 10  # stopped at the limit, not at the end of an endless search


def test_the_time_limit_restores_an_outer_timer_and_leaves_fast_analyses_alone():
    """A per-cell timer armed by the caller keeps firing after the analysis; a quick analysis is untouched."""
    import signal

    from edropout.deadline import AnalysisTimeout, time_limit

    fired = []
    previous = signal.signal(signal.SIGALRM, lambda *_: fired.append(True))
    try:
        signal.setitimer(signal.ITIMER_REAL, 30)
        model = timm.create_model("test_resnet", pretrained=False, num_classes=10, in_chans=1)
        assert find_units(model, _example(), seconds=20).num_units > 0
        left, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 0 < left <= 30  # the outer timer is armed again with what it had left
        signal.setitimer(signal.ITIMER_REAL, 0.2)  # an outer timer that fires first is not replaced
        with time_limit(5):
            time.sleep(0.5)
        assert fired == [True]
        with pytest.raises(AnalysisTimeout, match="within 0.2 s"):
            with time_limit(0.2):
                while True:
                    sum(range(1000))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_kept_per_group_reads_the_heads_an_attention_module_kept():
    """Structured `shuffled` and EDropout's controls read widths per group; head groups have no root layer."""
    from benchmark.cell.structured import kept_per_group
    from edropout import shrink

    dense = timm.create_model("test_vit", pretrained=False, num_classes=10, in_chans=1, img_size=SIZE)
    pruned = copy.deepcopy(dense)
    units = find_units(pruned, _example())
    keep = torch.rand(units.num_units, generator=torch.Generator().manual_seed(0)) < 0.6
    keep[units.offsets] = True  # at least one unit per group
    shrink(pruned, _example(), units, keep)
    _, counts = kept_per_group(dense, pruned, _example())
    assert counts == [int(part.sum()) for part in units.split(keep)]
    assert any(g.root is None for g in units.groups)  # the heads were part of it
