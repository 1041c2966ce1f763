"""EDropout library fixes: BN recalibration of F, filter-layout BatchNorm masking, compression without
shrinking, frozen optimiser state of pruned units, patience that can fire, the authors' mutation rule.

Real timm models trained for real steps on scikit-learn's digits at 8x8 (one thread, seconds each).
"""

import functools
import warnings

import pytest
import timm
import torch
import torch.nn.functional as F
from torch import nn

from edropout import EDropout, EDropoutConfig, recalibrate_batchnorm
from edropout.evolution import mutate, pick_donors

torch.set_num_threads(1)


@functools.cache
def _digits():
    from sklearn.datasets import load_digits

    raw = load_digits()
    x = (torch.tensor(raw.images, dtype=torch.float32)[:, None] / 16.0 - 0.3) / 0.4
    y = torch.tensor(raw.target)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    return x[order[:1400]], y[order[:1400]], x[order[1400:]], y[order[1400:]]


def _batches(size=64):
    x, y, _, _ = _digits()
    return [(x[i : i + size], y[i : i + size]) for i in range(0, len(y), size)]


def _model(arch="test_resnet"):
    torch.manual_seed(0)
    return timm.create_model(arch, num_classes=10, in_chans=1)


def _accuracy(net):
    _, _, x, y = _digits()
    net.eval()
    with torch.no_grad():
        return float((net(x).argmax(1) == y).float().mean())


def _train(model, ctrl, epochs, steps=None, lr=0.05, weight_decay=5e-4, pass_optimizer=True):
    make = lambda: torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)
    optimizer = make()
    for _ in range(epochs):
        model.train()
        for x, y in _batches()[:steps]:
            ctrl.before_step(x, y)
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            ctrl.after_step(optimizer) if pass_optimizer else ctrl.after_step()
        if ctrl.end_epoch():
            optimizer = make()
    return optimizer


def _pruned_pieces(ctrl):
    """(tensor name, dim, pruned channel index) of every slice the best state switches off."""
    out = []
    for bits, group in zip(ctrl.units.split(ctrl.best), ctrl.units.groups):
        off = (~bits).nonzero().flatten()
        if off.numel():
            out.extend((piece.name, piece.dim, piece.index[off]) for piece in group.slices)
    return out


# -- 1. F with recalibrated BatchNorm statistics -----------------------------------------------------------


def test_full_network_after_batchnorm_recalibration_beats_chance_and_the_masked_statistics():
    model = _model()
    x0 = _batches()[0][0]
    ctrl = EDropout(model, x0[:1], epochs=3, config=EDropoutConfig(patience=None))
    _train(model, ctrl, epochs=3)
    pruned_top1 = _accuracy(ctrl.finalize())
    stale = ctrl.full_network()
    stale_top1 = _accuracy(stale)
    full = ctrl.full_network(recalibrate=_batches())
    full_top1 = _accuracy(full)
    print(f"P {pruned_top1:.3f}  F (masked BN statistics) {stale_top1:.3f}  F (recalibrated) {full_top1:.3f}")
    assert full_top1 > 0.5 and full_top1 > stale_top1 + 0.05
    # the same weights: only BatchNorm's running statistics differ
    stale_state, full_state = stale.state_dict(), full.state_dict()
    for name, value in full_state.items():
        if "running" not in name and "num_batches_tracked" not in name:
            assert torch.equal(value, stale_state[name]), name


def test_recalibrate_batchnorm_uses_cumulative_statistics_and_restores_modes():
    model = _model()
    model.eval()
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    x = torch.cat([b[0] for b in _batches()[:4]])
    assert recalibrate_batchnorm(model, [b[0] for b in _batches()], max_batches=4) == 4  # inputs alone work too
    assert not model.training and all(m.momentum == 0.1 for m in norms)
    stem = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    with torch.no_grad():  # the first BatchNorm sees the first conv's output: its mean is the 4 batches' mean
        out = stem(x)
    first = norms[0]
    assert torch.allclose(first.running_mean, out.mean((0, 2, 3)), atol=1e-4)
    before = first.running_mean.clone()
    with pytest.raises(ValueError, match="no batches"):
        recalibrate_batchnorm(model, [])
    assert torch.equal(first.running_mean, before) and first.momentum == 0.1
    with pytest.raises(ValueError, match="max_batches must be > 0 or None, got 0"):
        recalibrate_batchnorm(model, _batches(), max_batches=0)


# -- 2. layout 'filter': the BatchNorm after a pruned filter is masked too -------------------------------------


def test_filter_layout_pruned_channel_is_exactly_zero_after_its_batchnorm():
    model = _model()
    x0 = _batches()[0][0]
    ctrl = EDropout(model, x0[:1], epochs=2, config=EDropoutConfig(layout="filter", shrink=False))
    conv_bn = {g.outputs[0].module_name: g.outputs[1].module_name for g in ctrl.units.groups if len(g.outputs) > 1}
    assert conv_bn, "no BatchNorm was attached to its conv"
    modules = dict(model.named_modules())
    assert all(modules[conv].out_channels == modules[bn].num_features for conv, bn in conv_bn.items())
    _train(model, ctrl, epochs=1, steps=6, weight_decay=0.1)  # stop_fraction 0.5 of 2 epochs: frozen after epoch 1
    assert ctrl.frozen
    tensors = dict(model.named_parameters()) | dict(model.named_buffers())
    before = [tensors[name].index_select(dim, index).clone() for name, dim, index in _pruned_pieces(ctrl)]
    outputs = {}
    hooks = [
        module.register_forward_hook(lambda m, i, o, n=name: outputs.__setitem__(n, o.detach().clone()))
        for name, module in model.named_modules()
        if name in conv_bn.values()
    ]
    _train(model, ctrl, epochs=1, steps=3, weight_decay=0.1)
    for hook in hooks:
        hook.remove()
    for group, bits in zip(ctrl.units.groups, ctrl.units.split(ctrl.best)):
        if len(group.outputs) > 1 and (~bits).any():
            bn = group.outputs[1]
            assert (outputs[bn.module_name][:, bn.index[~bits]] == 0).all(), bn.module_name  # training-mode BN
    for (name, dim, index), then in zip(_pruned_pieces(ctrl), before):  # no update, no decay, no statistics drift
        assert torch.equal(tensors[name].index_select(dim, index), then), name

    final = ctrl.finalize().eval()
    params = dict(final.named_parameters())
    checked = 0
    outputs.clear()
    hooks = [
        module.register_forward_hook(lambda m, i, o, n=name: outputs.__setitem__(n, o.detach().clone()))
        for name, module in final.named_modules()
        if name in conv_bn.values()
    ]
    with torch.no_grad():
        final(x0)
    for hook in hooks:
        hook.remove()
    for group, bits in zip(ctrl.units.groups, ctrl.units.split(ctrl.best)):
        off = (~bits).nonzero().flatten()
        if len(group.outputs) < 2 or off.numel() == 0:
            continue
        conv, bn = group.outputs
        assert (params[f"{conv.module_name}.weight"][off] == 0).all()
        assert (params[f"{bn.module_name}.weight"][off] == 0).all() and (
            params[f"{bn.module_name}.bias"][off] == 0
        ).all()
        assert (outputs[bn.module_name][:, off] == 0).all()  # eval mode, running statistics: still exactly zero
        checked += 1
    assert checked > 3


# -- 3. compression without shrinking ---------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["filter", "group"])
def test_unshrunk_network_reports_nonzero_compression(layout):
    model = _model()
    total = sum(p.numel() for p in model.parameters())
    x0 = _batches()[0][0]
    ctrl = EDropout(model, x0[:1], epochs=1, config=EDropoutConfig(layout=layout, shrink=False, patience=None))
    _train(model, ctrl, epochs=1, steps=4)
    x = x0[:16]
    ctrl.masker.set_states(ctrl.best)
    model.eval()
    with torch.no_grad():
        masked = model(x)
    pruned = ctrl.finalize()
    with torch.no_grad():
        final = pruned(x)
    assert torch.allclose(masked, final, atol=1e-4)  # zeroing every removed parameter is what the mask did
    nonzero = sum(int(torch.count_nonzero(p)) for p in pruned.parameters())
    removed = ctrl.removed_parameters()
    assert sum(p.numel() for p in pruned.parameters()) == total  # nothing was shrunk
    assert 0 < removed and nonzero < total
    assert total - nonzero >= removed  # every removed parameter is exactly zero (a few more may be by chance)
    assert total - nonzero - removed < 0.01 * total


def test_removed_parameters_equal_what_a_physical_shrink_removes():
    model = _model()
    total = sum(p.numel() for p in model.parameters())
    x0 = _batches()[0][0]
    ctrl = EDropout(model, x0[:1], epochs=1, config=EDropoutConfig(patience=None))
    _train(model, ctrl, epochs=1, steps=3)
    shrunk = ctrl.finalize()
    assert ctrl.removed_parameters() == total - sum(p.numel() for p in shrunk.parameters()) > 0


# -- 4. optimiser state of pruned units ---------------------------------------------------------------------------


def _state_slices(ctrl, optimizer, key):
    params = dict(ctrl.model.named_parameters())
    return [
        optimizer.state[params[name]][key].index_select(dim, index).clone()
        for name, dim, index in _pruned_pieces(ctrl)
        if name in params and key in optimizer.state[params[name]]
    ]


def _weights(ctrl):
    params = dict(ctrl.model.named_parameters())
    return [
        params[name].index_select(dim, index).clone() for name, dim, index in _pruned_pieces(ctrl) if name in params
    ]


def _steps(ctrl, optimizer, batches, pass_optimizer=True):
    for x, y in batches:
        ctrl.before_step(x, y)
        loss = F.cross_entropy(ctrl.model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        ctrl.after_step(optimizer) if pass_optimizer else ctrl.after_step()


@pytest.mark.parametrize("pass_optimizer", [True, False])
def test_momentum_of_pruned_units_is_frozen_when_after_step_gets_the_optimizer(pass_optimizer):
    model = _model()
    x0 = _batches()[0][0]
    ctrl = EDropout(model, x0[:1], epochs=2, config=EDropoutConfig(shrink=False))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=0.1)
    _steps(ctrl, optimizer, _batches()[:3], pass_optimizer)
    ctrl.end_epoch()  # stop_fraction 0.5 of 2 epochs: the mask freezes
    assert ctrl.frozen
    weights, momenta = _weights(ctrl), _state_slices(ctrl, optimizer, "momentum_buffer")
    assert momenta
    _steps(ctrl, optimizer, _batches()[3:7], pass_optimizer)  # four more SGD steps with weight decay 0.1
    assert all(torch.equal(now, then) for now, then in zip(_weights(ctrl), weights))
    unchanged = [
        torch.equal(now, then) for now, then in zip(_state_slices(ctrl, optimizer, "momentum_buffer"), momenta)
    ]
    if pass_optimizer:
        assert all(unchanged)
    else:  # the old call: weight decay keeps integrating into the pruned units' momentum
        assert not any(unchanged)


def test_optimizer_state_created_for_a_pruned_unit_is_zero():
    model = _model()
    x0 = _batches()[0][0]
    ctrl = EDropout(model, x0[:1], epochs=2, config=EDropoutConfig(shrink=False))
    _steps(ctrl, torch.optim.SGD(model.parameters(), lr=0.05), _batches()[:3])
    ctrl.end_epoch()
    assert ctrl.frozen
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=0.1)  # rebuilt
    _steps(ctrl, optimizer, _batches()[3:6])
    momenta = _state_slices(ctrl, optimizer, "momentum_buffer")
    assert momenta and all((m == 0).all() for m in momenta)


def test_adadelta_accumulators_of_pruned_units_do_not_move():
    model = _model()
    x0 = _batches()[0][0]
    ctrl = EDropout(model, x0[:1], epochs=2, config=EDropoutConfig(shrink=False))
    optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0, rho=0.9, eps=1e-6, weight_decay=1e-2)
    _steps(ctrl, optimizer, _batches()[:2])
    ctrl.end_epoch()
    _steps(ctrl, optimizer, _batches()[2:3])
    saved = {key: _state_slices(ctrl, optimizer, key) for key in ("square_avg", "acc_delta")}
    _steps(ctrl, optimizer, _batches()[3:6])
    for key, then in saved.items():
        now = _state_slices(ctrl, optimizer, key)
        assert then and all(torch.equal(a, b) for a, b in zip(now, then)), key


# -- 5. convergence options that can fire -----------------------------------------------------------------------


def test_patience_fraction_fires_inside_a_short_search_window():
    model = _model()
    x0 = _batches()[0][0]
    steps = len(_batches())
    config = EDropoutConfig(patience=None, patience_fraction=0.1, stop_fraction=1.0)
    ctrl = EDropout(model, x0[:1], epochs=1, config=config, steps_per_epoch=steps, seed=0)
    assert ctrl.search_window_generations == steps and ctrl.patience_generations == -(-steps // 10)
    ctrl.population[:] = ctrl.population[0]  # one state: the best can never change, so patience must fire
    _train(model, ctrl, epochs=1)
    assert ctrl.stop_reason == "patience" and ctrl.converged_epoch == 1
    assert len(ctrl.history) < steps and ctrl.searched_epochs == 1


def test_patience_that_cannot_fire_warns_and_converged_epoch_is_explained_by_searched_epochs():
    model = _model()
    x0 = _batches()[0][0]
    ctrl = EDropout(model, x0[:1], epochs=2, config=EDropoutConfig(patience=100))  # the default
    with pytest.warns(UserWarning, match="patience 100 can never fire: the search window has only 22 generations"):
        _train(model, ctrl, epochs=2, steps=None)
    assert ctrl.stop_reason == "stop_fraction"
    assert ctrl.converged_epoch == 2 and ctrl.searched_epochs == 1  # frozen at the start of epoch 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # with the window known up front and a patience that fits: no warning
        small = EDropout(_model(), x0[:1], epochs=2, config=EDropoutConfig(patience=5), steps_per_epoch=22)
        small.before_step(*_batches()[0])


@pytest.mark.parametrize(
    "change,message",
    [
        ({"patience_fraction": 0.0}, r"patience_fraction must be in \(0, 1\] or None, got 0.0"),
        ({"patience_fraction": 1.5}, r"patience_fraction must be in \(0, 1\] or None, got 1.5"),
        ({"mutation": "paper"}, "mutation 'paper' is not one of spec, authors"),
    ],
)
def test_new_settings_are_validated(change, message):
    with pytest.raises(ValueError, match=message):
        EDropoutConfig(**change).validate()


# -- 6. the authors' mutation rule --------------------------------------------------------------------------------


def test_authors_mutation_rule():
    g = torch.Generator().manual_seed(0)
    population = torch.rand(8, 4000, generator=g) < 0.5
    donors = pick_donors(8, g)
    x1, x2, x3 = (population[donors[:, k]] for k in range(3))
    assert torch.equal(mutate(population, donors, 1.0, g, rule="authors"), x1)  # F = 1: always copy r1
    assert torch.equal(mutate(population, donors, 0.0, g, rule="authors"), (x2 == x3) & ~x1)
    mutant = mutate(population, donors, 0.9, g, rule="authors")
    copied = float((mutant == x1).float().mean())
    assert 0.88 < copied < 0.97  # 90% copies, plus the 10% draws that happen to equal x1
    assert not (mutant & ~x1 & (x2 != x3)).any()  # a 1 that is not r1's comes only where the donors agree
    with pytest.raises(ValueError, match="mutation rule 'x' is not one of spec, authors"):
        mutate(population, donors, 0.9, g, rule="x")


@pytest.mark.parametrize("mutation", ["spec", "authors"])
def test_both_mutation_rules_give_binary_states_that_keep_enough_units(mutation):
    model = _model()
    x0 = _batches()[0][0]
    config = EDropoutConfig(mutation=mutation, min_kept_per_group=2, p_init=0.2, patience=None)
    ctrl = EDropout(model, x0[:1], epochs=1, config=config)
    _train(model, ctrl, epochs=1, steps=5)
    assert ctrl.population.dtype == torch.bool and len(ctrl.history) == 5
    for part, group in zip(ctrl.units.split(ctrl.population), ctrl.units.groups):
        assert (part.sum(1) >= min(2, group.size)).all(), group.name
