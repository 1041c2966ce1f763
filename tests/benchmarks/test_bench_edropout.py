"""EDropout's speed on ResNet-18 with digits (8x8, one channel, batch of 64: what the study's cells run).

Groups: one training step (dense, EDropout with the search on, EDropout after the freeze on the shrunk
network), population evaluation (all 2 x NS states in one batched pass vs one state at a time, energy
batches of 8, 16 and 64 samples) and the forward pass (masked network vs the physically shrunk one).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from benchmark.cell.models import create_model
from benchmark.core.config import ModelConfig
from edropout import EDropout, EDropoutConfig
from tests.benchmarks.conftest import Floor

ARCH, CLASSES, CHANNELS, SIZE, BATCH = "resnet18", 10, 1, 8, 64
# Whole training = the searched epochs at the search step's cost, the rest at the shrunk step's cost.
STOP_FRACTION = EDropoutConfig().stop_fraction

STEP_COST = Floor(
    floor=2.8,
    kind="cost",
    target="EDropout whole training <= 1.0x dense, same epochs (issue 11)",
    why=(
        "the corrected energy scores 2 x NS = 16 states per step with a forward pass of the batch each "
        "(about 5x a dense step's work), so the 1.0x target is out of reach without changing the method; "
        "measured 2.37x for ResNet-18 on a quiet machine (1.48-1.74x for whole cells of the default study's "
        "small networks); this ceiling on the whole-training "
        "estimate (search step for stop_fraction of the epochs, shrunk step after) catches a regression"
    ),
)
SHRUNK_COST = Floor(
    floor=0.75,
    kind="cost",
    target="the shrunk network trains faster than the dense one",
    why="measured 0.25x dense under load (p_init 0.5 keeps about half the channels); ceiling with margin",
)
POPULATION_TARGET = "batched population evaluation >= 3x one state at a time (issue 11)"
# Measured under load, 1 thread (2026-11-26): 4.8-7.5x at 8 samples, 1.8-2.0x at 16, 0.96-1.24x at 64. One
# batched pass saves the per-call overhead (about 90 ms per state here), not the arithmetic; at 64 samples
# the 16 states are a 1,024-sample pass and the arithmetic dominates. Floors below the measured range.
POPULATION_SPEEDUP = {
    8: Floor(
        1.7,
        POPULATION_TARGET,
        "measured 2.00-2.29x on a quiet machine at 8 samples (4.8-7.5x under load, where each call costs more): "
        "the target is not met; the floor catches batching losing its edge",
    ),
    16: Floor(1.5, POPULATION_TARGET, "measured 1.8-2.0x at 16 samples: the arithmetic dominates, not the calls"),
    64: Floor(0.8, POPULATION_TARGET, "measured 0.96-1.24x at 64 samples: only catches batching becoming slower"),
}
SEARCH_STEP_COST = Floor(
    5.5,
    "a search step within the corrected energy's budget (a step plus 16 state forwards, about 6x dense)",
    "measured 4.53x dense on a quiet machine (2.7x under load); the ceiling catches a search that grows beyond "
    "its budget",
    "cost",
)
FORWARD_SPEEDUP = Floor(
    floor=2.0,
    target="the physically shrunk network is faster than the masked one (the gain of shrinking)",
    why="measured 2.6-3.8x under load (about half the channels kept, a quarter of the MACs); margin for noise",
)


def resnet18() -> torch.nn.Module:
    return create_model(ModelConfig(arch=ARCH), CLASSES, CHANNELS, SIZE)


def batch(n: int = BATCH) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(n, CHANNELS, SIZE, SIZE, generator=generator), torch.randint(
        0, CLASSES, (n,), generator=generator
    )


def controller(model: torch.nn.Module, **settings) -> EDropout:
    x, _ = batch()
    return EDropout(model, x[:1], epochs=2, config=EDropoutConfig(patience=None, **settings))


def sgd(model: torch.nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)


def train_step(variant: str):
    """One training step of `variant` as a callable, on a fresh ResNet-18 (what the harness's loop does)."""
    model, (x, y) = resnet18(), batch()
    ctrl = None
    if variant != "dense":
        ctrl = controller(model)
        if variant == "edropout-shrunk":
            ctrl.before_step(x, y)  # one generation, then the freeze: the physically smaller network
            model, ctrl = ctrl.finalize(), None
    optimizer = sgd(model)
    model.train()

    def step():
        if ctrl is not None:
            ctrl.before_step(x, y)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if ctrl is not None:
            ctrl.after_step(optimizer)

    return step


@pytest.mark.parametrize("variant", ["dense", "edropout-search", "edropout-shrunk"])
def test_training_step(benchmark, pairs, variant):
    pairs.time(benchmark, "train-step", variant, train_step(variant), rounds=5, warmup=1)
    if variant == "edropout-search":
        pairs.check(benchmark, "train-step", variant, "dense", SEARCH_STEP_COST)
    if variant == "edropout-shrunk":
        pairs.check(benchmark, "train-step", variant, "dense", SHRUNK_COST)
        best = pairs.best
        if benchmark.enabled and ("train-step", "edropout-search") in best and ("train-step", "dense") in best:
            search, shrunk = best[("train-step", "edropout-search")], best[("train-step", variant)]
            pairs.best[("train-step", "edropout-whole")] = STOP_FRACTION * search + (1 - STOP_FRACTION) * shrunk
        pairs.check(benchmark, "train-step", "edropout-whole", "dense", STEP_COST, label="whole_training_ratio")


@pytest.mark.parametrize("energy_batch", [8, 16, 64])
@pytest.mark.parametrize("path", ["one-by-one", "batched"])
def test_population_evaluation(benchmark, pairs, path, energy_batch):
    if not benchmark.enabled and energy_batch != min(POPULATION_SPEEDUP):
        pytest.skip(
            f"energy batch {energy_batch}: the same code as {min(POPULATION_SPEEDUP)}, timed by `make bench` only"
        )
    ctrl = controller(resnet18())
    x, y = batch(energy_batch)
    states = torch.cat([ctrl.population, ctrl.population])  # parents and trials: 2 x NS states per generation
    if path == "batched":
        fn = lambda: ctrl.energies(states, x, y)
    else:
        fn = lambda: [ctrl.energies(state[None], x, y) for state in states]
    group = f"population-eb{energy_batch}"
    pairs.time(benchmark, group, path, fn, rounds=3)
    benchmark.extra_info["states"] = len(states)
    if path == "batched":
        pairs.check(benchmark, group, path, "one-by-one", POPULATION_SPEEDUP[energy_batch])


@pytest.mark.parametrize("network", ["masked", "shrunk"])
def test_forward_pass(benchmark, pairs, network):
    model, (x, y) = resnet18(), batch()
    ctrl = controller(model)
    ctrl.before_step(x, y)  # the best state of one generation, applied by forward hooks
    if network == "shrunk":
        model = ctrl.finalize()
    model.eval()

    def forward():
        with torch.inference_mode():
            model(x)

    pairs.time(benchmark, "forward", network, forward, rounds=10, warmup=2)
    benchmark.extra_info["kept_fraction"] = round(float(ctrl.best.float().mean()), 3)
    if network == "shrunk":
        pairs.check(benchmark, "forward", network, "masked", FORWARD_SPEEDUP)
