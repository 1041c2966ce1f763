"""Binary differential evolution over a population of pruning states (bool tensors, states x units).

Mutation, rule 'spec' (../EDROPOUT.md, the default): for member i, three distinct other members
r1, r2, r3; mutant bit d is NOT x_r1[d] where x_r2[d] != x_r3[d] and a uniform draw is < F, else
x_r1[d]. Rule 'authors' (their code, `evolution()` in sparsifai/epruning edropout.py): with
probability F copy x_r1[d]; otherwise NOT x_r1[d] where x_r2[d] == x_r3[d] and 0 where they differ.
Crossover: the trial takes the mutant's bit with probability CR, and at one forced random position;
otherwise the parent's. Selection: a trial replaces its parent when its energy, measured on the same
batch, is not higher.
"""

from __future__ import annotations

import torch


def pick_donors(population_size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """(n, 3) indices: for each member, three distinct members other than itself."""
    if population_size < 4:
        raise ValueError(f"differential evolution needs at least 4 states, got {population_size}")
    scores = torch.rand(population_size, population_size, generator=generator)
    scores.fill_diagonal_(2.0)  # never pick oneself: rand() < 1 < 2
    return scores.argsort(dim=1)[:, :3]


MUTATION_RULES = ("spec", "authors")


def mutate(
    population: torch.Tensor,
    donors: torch.Tensor,
    factor: float,
    generator: torch.Generator | None = None,
    rule: str = "spec",
) -> torch.Tensor:
    if rule not in MUTATION_RULES:
        raise ValueError(f"mutation rule {rule!r} is not one of {', '.join(MUTATION_RULES)}")
    x1, x2, x3 = population[donors[:, 0]], population[donors[:, 1]], population[donors[:, 2]]
    draw = torch.rand(population.shape, generator=generator) < factor
    if rule == "spec":
        return x1 ^ ((x2 != x3) & draw)
    return torch.where(draw, x1, (x2 == x3) & ~x1)


def crossover(
    parents: torch.Tensor, mutants: torch.Tensor, rate: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    n, d = parents.shape
    take = torch.rand((n, d), generator=generator) < rate
    forced = torch.randint(0, d, (n,), generator=generator)
    take[torch.arange(n), forced] = True
    return torch.where(take, mutants, parents)


def select(
    parents: torch.Tensor, parent_energy: torch.Tensor, trials: torch.Tensor, trial_energy: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep each trial whose energy is not higher than its parent's (both measured on one batch)."""
    better = trial_energy <= parent_energy
    population = torch.where(better[:, None], trials, parents)
    energy = torch.where(better, trial_energy, parent_energy)
    return population, energy


def hamming_diversity(population: torch.Tensor) -> float:
    """Mean pairwise Hamming distance between states, as a fraction of the number of units."""
    n, d = population.shape
    x = population.float()
    differing = x @ (1 - x).T + (1 - x) @ x.T
    return float(differing.sum() / (n * (n - 1) * d)) if n > 1 else 0.0
