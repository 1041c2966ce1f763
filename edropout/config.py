"""EDropout settings. Defaults are the paper's (the values of the authors' code and README)."""

from __future__ import annotations

from dataclasses import dataclass, fields

ENERGIES = ("margin", "cross_entropy")
ENERGY_NORMS = ("running", "batch")
LAYOUTS = ("group", "filter")
MUTATIONS = ("spec", "authors")
SEARCHES = ("energy", "off", "noise")


@dataclass
class EDropoutConfig:
    population: int = 8
    """NS, the number of binary pruning states evolved together (paper: 8; >= 4 for DE's three donors)."""
    p_init: float = 0.5
    """Probability that a unit is kept in a freshly drawn state (paper: Bernoulli(0.5))."""
    energy: str = "margin"
    """'margin': -kappa * mean(z_true - max z_other) (paper); 'cross_entropy': kappa * mean CE."""
    kappa: float = 10.0
    """Energy scale (paper: 10). It does not change which state wins; it is kept for faithfulness."""
    mutation_factor: float = 0.9
    """F: probability of flipping a donor bit where the two other donors differ (paper: 0.9)."""
    mutation: str = "spec"
    """'spec': flip x_r1 where x_r2 != x_r3 with probability F (EDROPOUT.md). 'authors': the authors'
    code: copy x_r1 with probability F, else NOT x_r1 where x_r2 == x_r3 and 0 where they differ."""
    crossover_rate: float = 0.9
    """CR: probability of taking the mutant's bit (paper: 0.9); one random position always is."""
    energy_norm: str = "batch"
    """BatchNorm while measuring energies (all states in one batched pass either way). 'batch': each
    state normalised with its own batch statistics on the energy batch, as the authors' code did (its
    model was never in eval mode); running statistics untouched. 'running': the running statistics,
    which were accumulated under other states' masks: measured to rank states no better than chance
    (see `python -m benchmark.tools.energy_agreement`)."""
    energy_batch: int | None = None
    """Samples of each mini-batch used to measure energies (None: the whole batch, as the paper). A
    sub-batch is cheaper but noisier: on resnet10t/digits (batch of 64), 16 samples ranked states at
    Spearman 0.79 (83% of parent/trial decisions right), 32 at 0.85 (78%), the whole batch at 0.90
    (90%); see `python -m benchmark.tools.energy_agreement` and the README."""
    stop_fraction: float = 0.5
    """Stop the search at this fraction of the training epochs (paper: epoch 100 of 200); at least
    one epoch is searched unless this is 0 (0: keep the random initial mask)."""
    patience: int | None = 100
    """Also stop once the best state has not changed for this many generations (one generation per
    mini-batch; None: never). A value at or above the search window's generations cannot fire (the
    controller warns once it knows the window); see `patience_fraction` for a value that scales."""
    patience_fraction: float | None = None
    """Also stop once the best state has not changed for this fraction of the search window's
    generations (window: the searched epochs x steps per epoch; None: off). With both set, the
    smaller number of generations applies."""
    search: str = "energy"
    """'energy': the method. The controls that separate the search from chance, everything else equal
    (seed, p_init, initial population, schedule, shrink): 'off': the first Bernoulli(p_init) state,
    kept for the whole run (no generations); 'noise': the same differential evolution with every
    energy replaced by a uniform random number (drawn from a separate stream, so donors, mutation
    and crossover draw exactly as with 'energy')."""
    layout: str = "group"
    """'group': one bit per group of coupled channels (dependency graph), physically removable;
    'filter': one bit per output channel of every conv/linear layer, the authors' layout (masks only)."""
    shrink: bool = True
    """With layout 'group': physically remove pruned channels once the mask is frozen, and keep
    training the smaller network."""
    min_kept_per_group: int = 1
    """Every state keeps at least this many units of each group, so no layer is cut through."""
    kept_per_group: list[int] | None = None
    """The initial state keeps exactly this many units of each unit group, at random positions drawn
    from the seed (None: Bernoulli(p_init) bits). With search 'off' that is the `shuffled` control:
    EDropout's final per-group counts, positions shuffled, frozen from the first step."""

    def validate(self) -> None:
        if self.population < 4:
            raise ValueError(
                f"EDropout population must be >= 4 (differential evolution needs a parent "
                f"and three distinct donors), got {self.population}"
            )
        if self.kappa <= 0:
            raise ValueError(f"EDropout kappa must be > 0, got {self.kappa}")
        if not 0.0 < self.p_init <= 1.0:
            raise ValueError(f"EDropout p_init must be in (0, 1], got {self.p_init}")
        for name in ("mutation_factor", "crossover_rate", "stop_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"EDropout {name} must be in [0, 1], got {value}")
        if self.energy not in ENERGIES:
            raise ValueError(f"EDropout energy {self.energy!r} is not one of {', '.join(ENERGIES)}")
        if self.energy_norm not in ENERGY_NORMS:
            raise ValueError(f"EDropout energy_norm {self.energy_norm!r} is not one of {', '.join(ENERGY_NORMS)}")
        if self.layout not in LAYOUTS:
            raise ValueError(f"EDropout layout {self.layout!r} is not one of {', '.join(LAYOUTS)}")
        if self.energy_batch is not None and self.energy_batch <= 0:
            raise ValueError(f"EDropout energy_batch must be > 0 or None, got {self.energy_batch}")
        if self.patience is not None and self.patience <= 0:
            raise ValueError(f"EDropout patience must be > 0 or None, got {self.patience}")
        if self.patience_fraction is not None and not 0.0 < self.patience_fraction <= 1.0:
            raise ValueError(f"EDropout patience_fraction must be in (0, 1] or None, got {self.patience_fraction}")
        if self.search not in SEARCHES:
            raise ValueError(f"EDropout search {self.search!r} is not one of {', '.join(SEARCHES)}")
        if self.mutation not in MUTATIONS:
            raise ValueError(f"EDropout mutation {self.mutation!r} is not one of {', '.join(MUTATIONS)}")
        if self.kept_per_group is not None and (
            isinstance(self.kept_per_group, (str, bytes))
            or not all(isinstance(k, int) and not isinstance(k, bool) and k >= 1 for k in self.kept_per_group)
        ):
            raise ValueError(f"EDropout kept_per_group must be a list of counts >= 1, got {self.kept_per_group!r}")
        if self.min_kept_per_group < 1:
            raise ValueError(f"EDropout min_kept_per_group must be >= 1, got {self.min_kept_per_group}")

    @classmethod
    def from_dict(cls, values: dict) -> EDropoutConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown EDropout setting {unknown[0]!r}; valid settings: {', '.join(sorted(known))}")
        config = cls(**values)
        config.validate()
        return config
