"""The EDropout library: search operators, energy, masking, shrinking, and its guarantees."""

import copy

import pytest
import timm
import torch
import torch.nn as nn

from edropout import EDropout, EDropoutConfig, find_units, margin_energy
from edropout.energy import cross_entropy_energy
from edropout.evolution import crossover, mutate, pick_donors, select
from edropout.masking import Masker

FAMILIES = ["resnet18", "mobilenetv3_small_050", "efficientnet_b0", "convnext_atto", "regnety_002"]


def _model(arch="resnet18", size=16):
    torch.manual_seed(0)
    return timm.create_model(arch, num_classes=10, in_chans=1)


def _batch(n=16, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, size, size, generator=g), torch.randint(0, 10, (n,), generator=g)


# -- search operators --------------------------------------------------------------------------------


def test_donors_are_three_distinct_others():
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        donors = pick_donors(8, g)
        for i, row in enumerate(donors.tolist()):
            assert len(set(row)) == 3 and i not in row


def test_mutation_flips_only_where_the_two_other_donors_differ():
    g = torch.Generator().manual_seed(1)
    population = torch.rand(8, 4000, generator=g) < 0.5
    donors = pick_donors(8, g)
    x1, x2, x3 = (population[donors[:, k]] for k in range(3))
    mutant = mutate(population, donors, 0.9, g)
    flipped = mutant != x1
    assert not (flipped & (x2 == x3)).any()
    rate = flipped.sum() / (x2 != x3).sum()
    assert abs(float(rate) - 0.9) < 0.02  # flips at about F where donors differ
    assert torch.equal(mutate(population, donors, 1.0, g), x1 ^ (x2 != x3))
    assert torch.equal(mutate(population, donors, 0.0, g), x1)


def test_crossover_takes_the_mutant_at_the_cr_rate_plus_one_forced_position():
    g = torch.Generator().manual_seed(2)
    parents, mutants = torch.zeros(8, 20000, dtype=torch.bool), torch.ones(8, 20000, dtype=torch.bool)
    trial = crossover(parents, mutants, 0.9, g)
    assert abs(float(trial.float().mean()) - 0.9) < 0.01
    forced_only = crossover(parents, mutants, 0.0, g)
    assert forced_only.sum(1).tolist() == [1] * 8


def test_selection_never_keeps_a_worse_trial():
    g = torch.Generator().manual_seed(3)
    parents, trials = torch.rand(8, 50, generator=g) < 0.5, torch.rand(8, 50, generator=g) < 0.5
    pe, te = torch.randn(8, generator=g), torch.randn(8, generator=g)
    te[0] = pe[0]  # a tie goes to the trial ("not higher")
    population, energy = select(parents, pe, trials, te)
    assert torch.equal(energy, torch.minimum(pe, te))
    for i in range(8):
        expected = trials[i] if te[i] <= pe[i] else parents[i]
        assert torch.equal(population[i], expected)


# -- energy --------------------------------------------------------------------------------------------


def test_margin_energy_equals_a_hand_computed_value():
    logits = torch.tensor([[[2.0, 1.0, 0.0], [0.0, 3.0, 1.0]]])  # one state, two samples
    labels = torch.tensor([0, 2])
    # margins: 2 - 1 = 1 and 1 - 3 = -2; mean -0.5; E = -10 * -0.5
    assert margin_energy(logits, labels, kappa=10.0).tolist() == [5.0]
    ce = cross_entropy_energy(logits, labels, kappa=1.0)
    assert ce.item() == pytest.approx(nn.functional.cross_entropy(logits[0], labels).item())


# -- units, masks and shrinking --------------------------------------------------------------------------


@pytest.mark.parametrize("arch", FAMILIES)
def test_masked_and_shrunk_networks_agree(arch):
    model = _model(arch)
    with torch.no_grad():  # ConvNeXt's layer scale starts at 1e-6, which would hide any mask
        for name, p in model.named_parameters():
            if name.endswith("gamma"):
                p.fill_(1.0)
    x, y = _batch()
    ctrl = EDropout(model, x[:1], epochs=2, seed=0)
    model.train()
    ctrl.before_step(x, y)  # one generation; the best state is applied
    model(x)  # a training-mode pass moves BatchNorm statistics away from their initial values
    ctrl.after_step()
    model.eval()
    with torch.no_grad():
        masked = model(x)
        ctrl.masker.detach()
        unmasked = model(x)
        ctrl.masker.attach()
    pruned = ctrl.finalize().eval()
    with torch.no_grad():
        shrunk = pruned(x)
    assert (masked - shrunk).abs().max().item() < 1e-4
    assert (masked - unmasked).abs().max().item() > 1e-3  # the mask really removes something
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in ctrl.full_network().parameters())


@pytest.mark.parametrize(
    "epochs,stop_fraction,searched_epochs", [(1, 0.5, 1), (2, 0.5, 1), (8, 0.5, 4), (3, 1.0, 3), (2, 0.0, 0)]
)
def test_the_search_runs_for_stop_fraction_of_the_epochs_and_at_least_one(epochs, stop_fraction, searched_epochs):
    model = _model()
    x, y = _batch()
    ctrl = EDropout(
        model, x[:1], epochs=epochs, config=EDropoutConfig(stop_fraction=stop_fraction, patience=None, shrink=False)
    )
    for _ in range(epochs):
        for _ in range(2):  # two steps per epoch
            ctrl.before_step(x, y)
            ctrl.after_step()
        ctrl.end_epoch()
    assert len(ctrl.history) == 2 * searched_epochs
    assert {g.epoch for g in ctrl.history} == set(range(1, searched_epochs + 1))


def test_full_network_is_every_unit_on_with_the_trained_weights():
    model = _model()
    reference = copy.deepcopy(model).eval()
    x, y = _batch()
    ctrl = EDropout(model, x[:1], epochs=2)
    ctrl.generation(x, y)
    full = ctrl.full_network().eval()  # nothing trained: F must be the original network exactly
    with torch.no_grad():
        assert torch.allclose(full(x), reference(x), atol=1e-5)


def test_batched_population_energies_equal_one_by_one():
    model = _model()
    x, y = _batch(8)
    ctrl = EDropout(model, x[:1], epochs=2)
    batched = ctrl.energies(ctrl.population, x, y)
    single = torch.cat([ctrl.energies(state[None], x, y) for state in ctrl.population])
    assert torch.allclose(batched, single, atol=1e-4)
    assert len(set(batched.tolist())) > 1  # states really differ


def test_generation_keeps_no_member_worse_than_its_parent_on_the_same_batch():
    model = _model()
    x, y = _batch()
    ctrl = EDropout(model, x[:1], epochs=2, config=EDropoutConfig(energy_batch=None))
    before = ctrl.energies(ctrl.population, x, y)
    ctrl.generation(x, y)
    assert (ctrl.energy <= before + 1e-5).all()
    assert torch.allclose(ctrl.energies(ctrl.population, x, y), ctrl.energy, atol=1e-4)
    assert torch.equal(ctrl.best, ctrl.population[int(ctrl.energy.argmin())])


def test_same_seed_same_masks():
    runs = []
    for _ in range(2):
        model = _model()
        x, y = _batch()
        ctrl = EDropout(model, x[:1], epochs=2, seed=7)
        for step in range(3):
            ctrl.generation(*_batch(seed=step))
        runs.append((ctrl.population.clone(), ctrl.best.clone()))
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])
    other = EDropout(_model(), _batch()[0][:1], epochs=2, seed=8)
    assert not torch.equal(other.population, runs[0][0])


def test_pruned_weights_and_statistics_do_not_change_during_training():
    model = _model()
    x, y = _batch(32)
    ctrl = EDropout(model, x[:1], epochs=4, config=EDropoutConfig(patience=1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.1)
    model.train()
    for step in range(4):  # patience 1: the mask freezes early, then stays
        ctrl.before_step(x, y)
        if step == 1:
            frozen_best = ctrl.best.clone()
            before = {n: t.detach().clone() for n, t in list(model.named_parameters()) + list(model.named_buffers())}
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        ctrl.after_step()
    assert ctrl.frozen and torch.equal(ctrl.best, frozen_best)
    tensors = dict(model.named_parameters()) | dict(model.named_buffers())
    changed_kept = False
    for bits, group in zip(ctrl.units.split(ctrl.best), ctrl.units.groups):
        off, on = (~bits).nonzero().flatten(), bits.nonzero().flatten()
        for piece in group.slices:
            now, then = tensors[piece.name], before[piece.name]
            assert torch.equal(
                now.index_select(piece.dim, piece.index[off]), then.index_select(piece.dim, piece.index[off])
            ), piece.name
            if piece.name.endswith("weight") and not torch.equal(
                now.index_select(piece.dim, piece.index[on]), then.index_select(piece.dim, piece.index[on])
            ):
                changed_kept = True
    assert changed_kept  # the kept units did train


def test_every_group_keeps_at_least_one_unit():
    model = _model()
    ctrl = EDropout(model, _batch()[0][:1], epochs=2, config=EDropoutConfig(p_init=0.01))
    for part in ctrl.units.split(ctrl.population):
        assert (part.sum(1) >= 1).all()


def test_filter_layout_masks_each_conv_and_zeroes_filters_at_the_end():
    model = _model()
    x, y = _batch()
    units = find_units(model, x[:1], layout="filter")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(units.groups) == len(convs)  # one group per conv: every filter on its own, stem included
    ctrl = EDropout(model, x[:1], epochs=2, config=EDropoutConfig(layout="filter"))
    ctrl.generation(x, y)
    ctrl.masker.set_states(ctrl.best)
    model.eval()
    with torch.no_grad():
        masked = model(x)
        final = ctrl.finalize().eval()(x)
    assert torch.allclose(masked, final, atol=1e-4)


@pytest.mark.parametrize(
    "change,message",
    [
        ({"population": 3}, "population must be >= 4"),
        ({"kappa": 0.0}, "kappa must be > 0"),
        ({"kappa": -1.0}, "kappa must be > 0"),
        ({"energy": "ising"}, "energy 'ising' is not one of margin, cross_entropy"),
        ({"layout": "channel"}, "layout 'channel' is not one of group, filter"),
    ],
)
def test_bad_settings_are_clear_errors(change, message):
    with pytest.raises(ValueError, match=message):
        EDropoutConfig(**change).validate()


def test_unknown_setting_names_the_valid_ones():
    with pytest.raises(ValueError, match="unknown EDropout setting 'populaton'; valid settings: .*population"):
        EDropoutConfig.from_dict({"populaton": 8})


def test_a_model_without_prunable_units_is_a_clear_error():
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))  # only the classifier, never pruned
    with pytest.raises(ValueError, match="no prunable units"):
        EDropout(model, torch.zeros(1, 1, 8, 8), epochs=2)


def test_masker_applies_per_state_masks_to_replicated_batches():
    model = _model()
    x, _ = _batch(4)
    units = find_units(model, x[:1])
    masker = Masker(units).attach()
    states = torch.rand(3, units.num_units) < 0.5
    model.eval()
    with torch.no_grad():
        masker.set_states(states)
        together = model(x.repeat(3, 1, 1, 1)).view(3, 4, -1)
        for s in range(3):
            masker.set_states(states[s])
            assert torch.allclose(model(x), together[s], atol=1e-4)
    masker.detach()


def test_batch_statistics_energy_leaves_running_statistics_alone():
    model = _model()
    x, y = _batch()
    ctrl = EDropout(model, x[:1], epochs=2, config=EDropoutConfig(energy_norm="batch"))
    stats = {n: b.clone() for n, b in model.named_buffers() if "running" in n}
    batch_energy = ctrl.energies(ctrl.population, x, y)
    assert all(torch.equal(stats[n], b) for n, b in model.named_buffers() if "running" in n)
    assert all(m.momentum == 0.1 for m in model.modules() if isinstance(m, nn.BatchNorm2d))  # restored
    ctrl.masker.detach()  # one controller per network
    running = EDropout(model, x[:1], epochs=2, config=EDropoutConfig(energy_norm="running")).energies(
        ctrl.population, x, y
    )
    assert not torch.allclose(batch_energy, running)  # the two modes really differ
