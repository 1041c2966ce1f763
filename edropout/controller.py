"""The EDropout controller: plug it into any training loop.

ctrl = EDropout(model, example_inputs, epochs=E)
for epoch in range(E):
    for x, y in loader:
        ctrl.before_step(x, y)       # one generation of the search on this batch; best state applied
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(); loss.backward()
        optimizer.step()
        ctrl.after_step(optimizer)   # pruned units' weights, statistics and optimiser state put back
    if ctrl.end_epoch():             # True when the network was just shrunk physically
        optimizer = make_optimizer(model.parameters())
pruned = ctrl.finalize()             # the physically shrunk network (layout 'group'), else zeroed units
full = ctrl.full_network(recalibrate=loader, max_batches=50)  # every unit on (the paper's F), BN re-estimated
removed = ctrl.removed_parameters()  # parameters the mask removes, also when nothing was shrunk
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from edropout.batchnorm import per_state_batch_statistics, recalibrate_batchnorm
from edropout.config import EDropoutConfig
from edropout.convergence import Convergence
from edropout.energy import ENERGY_FUNCTIONS
from edropout.evolution import crossover, hamming_diversity, mutate, pick_donors, select
from edropout.masking import Masker
from edropout.restore import write_back
from edropout.units import Coverage, UnitLayout, coverage, find_units, shrink


@dataclass
class Generation:
    step: int
    epoch: int
    best_energy: float
    mean_energy: float
    diversity: float
    kept_fraction: float
    best_changed: bool


class EDropout(Convergence):
    """The search, the masks and the result. `steps_per_epoch` (optional) sizes the search window for
    `patience_fraction` from the start; without it the controller learns it at the end of epoch 1.

    `converged_epoch` is the epoch counter when the mask froze: after a stop at an epoch boundary
    (stop_fraction) it is the first epoch *not* searched, after a patience stop the epoch in which it
    fired (searched in part). `searched_epochs` counts the epochs with at least one generation, and
    `stop_reason` says what stopped the search ('stop_fraction', 'patience' or 'finalize').
    """

    def __init__(
        self,
        model: nn.Module,
        example_inputs: torch.Tensor,
        epochs: int,
        config: EDropoutConfig | None = None,
        seed: int = 0,
        steps_per_epoch: int | None = None,
    ):
        self.config = config or EDropoutConfig()
        self.config.validate()
        if epochs <= 0:
            raise ValueError(f"epochs must be > 0, got {epochs}")
        if steps_per_epoch is not None and steps_per_epoch <= 0:
            raise ValueError(f"steps_per_epoch must be > 0 or None, got {steps_per_epoch}")
        self.steps_per_epoch = steps_per_epoch
        self.model, self.epochs = model, epochs
        self._example_inputs = example_inputs
        self.units: UnitLayout = find_units(model, example_inputs, self.config.layout)
        self.coverage: Coverage = coverage(model, self.units)  # what can be pruned, and what is skipped and why
        self.masker = Masker(self.units).attach()
        self.generator = torch.Generator().manual_seed(seed)
        self._noise = torch.Generator().manual_seed(seed + 7919)  # search='noise': its random energies
        n, d = self.config.population, self.units.num_units
        self.population = self._repair(torch.rand((n, d), generator=self.generator) < self.config.p_init)
        if self.config.kept_per_group is not None:
            self.population[0] = self._state_with_counts(self.config.kept_per_group)
        self.energy = torch.full((n,), float("inf"))
        self.best = self.population[0].clone()
        self.masker.set_states(self.best)
        self.history: list[Generation] = []
        self.epoch, self.step = 1, 0
        self.unchanged = 0
        self.frozen = False
        self.converged_epoch: int | None = None
        self.converged_step: int | None = None
        self.stop_reason: str | None = None
        self._warned_patience = False
        self.shrunk = False
        self.search_seconds = 0.0
        self._snapshot: list[tuple[torch.Tensor, int, torch.Tensor, torch.Tensor]] = []
        self._pruned: list[tuple[torch.Tensor, int, torch.Tensor]] = []
        self._tensors = dict(model.named_parameters()) | dict(model.named_buffers())
        self._parameter_names = {name for name, _ in model.named_parameters()}
        self._full: nn.Module | None = None  # the full network (every unit on) once the search is over
        self._applied = False
        self._state_owner: torch.optim.Optimizer | None = None  # the optimiser seen by the last after_step
        self._state_snapshot: list[tuple[torch.Tensor, int, torch.Tensor, torch.Tensor]] = []

    # -- the search -------------------------------------------------------------------------------

    def _repair(self, states: torch.Tensor) -> torch.Tensor:
        """Give every group at least `min_kept_per_group` kept units (random ones where missing)."""
        need = self.config.min_kept_per_group
        for part, group in zip(self.units.split(states), self.units.groups):
            short = part.sum(1) < min(need, group.size)
            for row in short.nonzero().flatten().tolist():
                chosen = torch.randperm(group.size, generator=self.generator)[: min(need, group.size)]
                part[row, chosen] = True
        return states

    def _state_with_counts(self, counts: list[int]) -> torch.Tensor:
        """A state keeping exactly counts[g] units of group g, at positions drawn from the generator."""
        groups = self.units.groups
        if len(counts) != len(groups):
            raise ValueError(f"kept_per_group has {len(counts)} counts, but this network has {len(groups)} unit groups")
        parts = []
        for count, group in zip(counts, groups):
            if count > group.size:
                raise ValueError(f"kept_per_group asks for {count} units of group {group.name}, which has {group.size}")
            part = torch.zeros(group.size, dtype=torch.bool)
            part[torch.randperm(group.size, generator=self.generator)[:count]] = True
            parts.append(part)
        return torch.cat(parts)

    @torch.no_grad()
    def energies(self, states: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Energy of each state on (x, y).

        All states are scored in one forward pass of S copies of the batch, with the model in eval mode
        (no dropout). energy_norm 'batch': every BatchNorm normalises each state's copy with that copy's
        own batch statistics (running statistics untouched); 'running': with the running statistics.
        """
        states = states.reshape(-1, self.units.num_units)
        was_training = self.model.training
        try:
            self.model.eval()
            self.masker.set_states(states)
            copies = x.repeat(states.shape[0], *([1] * (x.dim() - 1)))
            if self.config.energy_norm == "batch":
                with per_state_batch_statistics(self.model, states.shape[0]):
                    logits = self.model(copies)
            else:
                logits = self.model(copies)
        finally:
            self.model.train(was_training)
            self._applied = False  # the training step must re-apply the best state
        logits = logits.view(states.shape[0], x.shape[0], -1).float()
        return ENERGY_FUNCTIONS[self.config.energy](logits, y, self.config.kappa).cpu()

    def generation(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """One generation: mutate, cross over, score parents and trials on this batch, select."""
        cfg = self.config
        if cfg.energy_batch is not None:
            x, y = x[: cfg.energy_batch], y[: cfg.energy_batch]
        donors = pick_donors(cfg.population, self.generator)
        mutants = mutate(self.population, donors, cfg.mutation_factor, self.generator, rule=cfg.mutation)
        trials = crossover(self.population, mutants, cfg.crossover_rate, self.generator)
        trials = self._repair(trials)
        if cfg.search == "noise":
            both = torch.rand(2 * cfg.population, generator=self._noise)
        else:
            both = self.energies(torch.cat([self.population, trials]), x, y)
        parent_energy, trial_energy = both[: cfg.population], both[cfg.population :]
        self.population, self.energy = select(self.population, parent_energy, trials, trial_energy)
        best = self.population[int(self.energy.argmin())]
        changed = not torch.equal(best, self.best)
        self.best = best.clone()
        self.unchanged = 0 if changed else self.unchanged + 1
        self.history.append(
            Generation(
                self.step,
                self.epoch,
                float(self.energy.min()),
                float(self.energy.mean()),
                hamming_diversity(self.population),
                float(self.best.float().mean()),
                changed,
            )
        )
        patience = self.patience_generations
        if patience is not None and self.unchanged >= patience:
            self._freeze("patience")

    # -- the training-loop hooks -----------------------------------------------------------------------

    def before_step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Run one generation (until convergence), apply the best state, remember what it prunes."""
        self.step += 1
        if self.shrunk:
            return
        if not self.frozen and self._search_over():
            self._freeze("stop_fraction")
        if self.step == 1:
            self._check_patience()
        if not self.frozen and self.config.search != "off":
            start = time.perf_counter()
            self.generation(x, y)
            self.search_seconds += time.perf_counter() - start
            self._applied = False
        if not self._applied:  # frozen: the mask and the pruned channels stay the same from step to step
            self.masker.set_states(self.best)
            self._pruned = self._pruned_slices()
            self._applied = True
        self._take_snapshot()

    def _pruned_slices(self) -> list[tuple[torch.Tensor, int, torch.Tensor]]:
        """(tensor, dim, channel index) of every channel the best state switches off."""
        out = []
        for bits, group in zip(self.units.split(self.best), self.units.groups):
            off = (~bits).nonzero().flatten()
            if off.numel() == 0:
                continue
            for piece in group.slices:
                tensor = self._tensors[piece.name]
                out.append((tensor, piece.dim, piece.index[off].to(tensor.device)))
        return out

    def _take_snapshot(self) -> None:
        """Values of the pruned channels before the step: the optimiser and BN must not move them."""
        self._snapshot = [(t, dim, index, t.detach().index_select(dim, index)) for t, dim, index in self._pruned]
        owner = self._state_owner
        self._state_snapshot = (
            []
            if owner is None
            else [
                (value, dim, index.to(value.device), value.index_select(dim, index.to(value.device)))
                for tensor, dim, index in self._pruned
                for value in _state_tensors(owner, tensor)
            ]
        )

    @torch.no_grad()
    def after_step(self, optimizer: torch.optim.Optimizer | None = None) -> None:
        """Put the pruned channels back as they were: no gradient step, no weight decay, no BN drift.

        With `optimizer`, its per-parameter state at the pruned channels (momentum buffers,
        Adadelta/Adam accumulators: every state tensor shaped like its parameter) is frozen too, so
        a pruned unit's state does not integrate weight decay while it is off: see
        `freeze_pruned_state`.
        """
        for tensor, dim, index, values in self._snapshot:
            tensor.index_copy_(dim, index, values)
        self._snapshot = []
        if optimizer is not None:
            self.freeze_pruned_state(optimizer)

    @torch.no_grad()
    def freeze_pruned_state(self, optimizer: torch.optim.Optimizer) -> None:
        """Put `optimizer`'s state at the pruned channels back to its value before this step.

        The values before the step are saved by `before_step` for the optimiser this method last saw
        (so from the second step on); state the step created, or the state of an optimiser not seen
        before (e.g. rebuilt), is zeroed there instead: a fresh state, as if the unit had never moved.
        (Zeroing every step instead would wipe the momentum of units the search switches off for a
        step, slowing their training; restoring keeps it as it was.)
        """
        restored = set()
        if optimizer is self._state_owner:
            for value, dim, index, saved in self._state_snapshot:
                value.index_copy_(dim, index, saved)
                restored.add(id(value))
        for tensor, dim, index in self._pruned:
            for value in _state_tensors(optimizer, tensor):
                if id(value) not in restored:
                    value.index_fill_(dim, index.to(value.device), 0.0)
        self._state_owner, self._state_snapshot = optimizer, []

    def end_epoch(self) -> bool:
        """Call after each epoch. Returns True when the network was shrunk (rebuild the optimiser)."""
        if self.steps_per_epoch is None and self.epoch == 1 and self.step > 0:
            self.steps_per_epoch = self.step
            self._check_patience()
        self.epoch += 1
        if not self.frozen and self._search_over():
            self._freeze("stop_fraction")
        if self.frozen and not self.shrunk and self.config.shrink and self.units.layout == "group":
            self._shrink()
            return True
        return False

    def epoch_summary(self) -> dict[str, float]:
        """Mean search statistics over the generations of the epoch just finished."""
        done = [g for g in self.history if g.epoch == self.epoch]
        if not done:
            return {"kept_fraction": float(self.best.float().mean())}
        mean = lambda key: sum(getattr(g, key) for g in done) / len(done)
        return {
            "best_energy": mean("best_energy"),
            "mean_energy": mean("mean_energy"),
            "diversity": mean("diversity"),
            "kept_fraction": float(self.best.float().mean()),
            "search_frozen": float(self.frozen),
        }

    # -- the result ---------------------------------------------------------------------------------

    def _shrink(self) -> None:
        """Remove the pruned channels physically (torch-pruning), keeping a copy of the full network."""
        self.masker.detach()
        self._full = copy.deepcopy(self.model)
        shrink(self.model, self._example_inputs, self.units, self.best)
        self.shrunk = True
        self._snapshot, self._pruned, self._state_snapshot, self._state_owner = [], [], [], None

    def finalize(self) -> nn.Module:
        """The pruned network, after training.

        Layout 'group' with `shrink`: physically smaller. Otherwise every parameter of the pruned
        units is zeroed in place: the masked layers' weights and biases, their BatchNorms' affine
        parameters and the consumers' input weights where they are exactly dead (see
        `removed_parameters`), which is what the mask did; the non-zero parameter count is then the
        pruned network's size.
        """
        self._freeze()
        if self.units.layout == "group" and self.config.shrink:
            if not self.shrunk:
                self._shrink()
            return self.model
        if self._full is None:
            self.masker.detach()
            self._full = copy.deepcopy(self.model)
            with torch.no_grad():
                for bits, group in zip(self.units.split(self.best), self.units.groups):
                    off = (~bits).nonzero().flatten()
                    for piece in group.slices:
                        if piece.name in self._parameter_names:
                            tensor = self._tensors[piece.name]
                            tensor.index_fill_(piece.dim, piece.index[off].to(tensor.device), 0.0)
        return self.model

    def removed_parameters(self) -> int:
        """Parameters of the full network that the best state removes (each counted once): the pruned
        units' filters and biases, their BatchNorms' weights and biases, and consumers' input weights
        where exact (layout 'group': always; 'filter': where no other layer adds into the channel).
        It equals full minus shrunk parameters after a physical shrink, and full minus non-zero
        parameters of `finalize()`'s network when nothing is shrunk (barring weights zero by chance)."""
        covered: dict[str, torch.Tensor] = {}
        for bits, group in zip(self.units.split(self.best), self.units.groups):
            off = (~bits).nonzero().flatten()
            if off.numel() == 0:
                continue
            for piece in group.slices:
                if piece.name not in self._parameter_names:
                    continue
                shape = self._tensors[piece.name].shape
                mask = covered.setdefault(piece.name, torch.zeros(shape, dtype=torch.bool))
                mask.index_fill_(piece.dim, piece.index[off], True)
        return int(sum(int(mask.sum()) for mask in covered.values()))

    def full_network(self, recalibrate: Iterable | None = None, max_batches: int | None = None) -> nn.Module:
        """The paper's F: the trained weights with every unit on (a new module; call after training).

        After a physical shrink, the kept channels come from the trained small network and the pruned
        ones from the moment the mask froze (they were not trained afterwards, as in the paper).
        BatchNorm's running statistics were gathered by the masked network; pass training batches as
        `recalibrate` (inputs or (x, y) tuples, at most `max_batches` of them) to re-estimate them for
        the full network (`recalibrate_batchnorm`); without it F keeps the masked statistics.
        """
        full = self._full_network()
        if recalibrate is not None:
            recalibrate_batchnorm(full, recalibrate, max_batches)
        return full

    def _full_network(self) -> nn.Module:
        pruned = self.finalize()
        full = copy.deepcopy(self._full)
        return write_back(full, pruned, self.units, self.best) if self.shrunk else full


def _state_tensors(optimizer: torch.optim.Optimizer, tensor: torch.Tensor) -> list[torch.Tensor]:
    """The optimiser's per-element state of `tensor` (tensors of its shape: momentum, accumulators)."""
    state = optimizer.state.get(tensor) if isinstance(tensor, nn.Parameter) else None
    return [v for v in (state or {}).values() if torch.is_tensor(v) and v.shape == tensor.shape]
