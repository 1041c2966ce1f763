"""EDropout's default energy scores each state on a network normalised with that state's own batch statistics."""

import pytest
import timm
import torch

from benchmark.tools.energy_agreement import measure
from edropout import EDropout, EDropoutConfig
from edropout.batchnorm import per_state_batch_statistics
from edropout.energy import ENERGY_FUNCTIONS


def _norms(model):
    return [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


@pytest.mark.parametrize("arch", ["test_resnet", "test_efficientnet"])  # plain BatchNorm2d; timm's BatchNormAct2d
def test_batched_energies_equal_scoring_each_state_alone_in_training_mode(arch):
    torch.manual_seed(0)
    model = timm.create_model(arch, num_classes=10, in_chans=1)
    x, y = torch.randn(12, 1, 32, 32), torch.randint(0, 10, (12,))
    ctrl = EDropout(model, x[:1], epochs=2, config=EDropoutConfig(population=4))
    states = torch.cat([ctrl.population, ~ctrl.population | ctrl.population[:1]])
    buffers = {k: v.clone() for k, v in model.named_buffers()}

    energies = ctrl.energies(states, x, y)

    assert all(torch.equal(buffers[k], v) for k, v in model.named_buffers())  # running stats and counters untouched
    assert all("forward" not in vars(m) for m in _norms(model))  # the per-state forward is gone again
    model.train()
    for m in _norms(model):
        m.momentum = 0.0
    alone = []
    with torch.no_grad():
        for state in states:
            ctrl.masker.set_states(state)
            alone.append(ENERGY_FUNCTIONS["margin"](model(x)[None].float(), y, 10.0))
    assert torch.allclose(energies, torch.cat(alone), atol=1e-4), (energies, torch.cat(alone))
    assert energies.unique().numel() > 1  # the states really differ


def test_running_statistics_mode_is_still_available_and_differs():
    torch.manual_seed(0)
    model = timm.create_model("test_resnet", num_classes=10, in_chans=1)
    x, y = torch.randn(8, 1, 16, 16), torch.randint(0, 10, (8,))
    batch = EDropout(model, x[:1], epochs=2, config=EDropoutConfig(population=4))
    running = EDropout(model, x[:1], epochs=2, config=EDropoutConfig(population=4, energy_norm="running"))
    assert EDropoutConfig().energy_norm == "batch" and EDropoutConfig().energy_batch is None  # the paper's scoring
    assert not torch.allclose(batch.energies(batch.population, x, y), running.energies(batch.population, x, y))


def test_a_norm_layer_with_its_own_forward_is_refused_with_a_reason():
    class Odd(torch.nn.BatchNorm2d):
        def forward(self, x):
            return super().forward(x) * 2

    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), Odd(4))
    with pytest.raises(TypeError, match="Odd has its own forward.*energy_norm='running'"):
        with per_state_batch_statistics(model, 2):
            pass
    assert "forward" not in vars(model[1])


def test_batch_energy_ranks_states_like_a_512_sample_probe_better_than_running_statistics():
    """A small net, one epoch with the search on, three probed generations: a floor, and a margin over 'running'."""
    batch = measure("test_resnet", "batch", epochs=1, probes_per_epoch=3, probe_size=512)
    running = measure("test_resnet", "running", epochs=1, probes_per_epoch=3, probe_size=512)
    assert batch[0].decisions >= 20
    assert batch[0].decision_agreement >= 0.6 and batch[0].mean_spearman >= 0.3
    assert batch[0].mean_spearman > running[0].mean_spearman
    assert batch[0].decision_agreement > running[0].decision_agreement
