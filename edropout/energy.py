"""Energies of pruning states: lower is better. Inputs are logits of shape (states, batch, classes)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def margin_energy(logits: torch.Tensor, labels: torch.Tensor, kappa: float = 10.0) -> torch.Tensor:
    """E(s) = -kappa * mean_b(z[b, y_b] - max_{j != y_b} z[b, j]), one value per state.

    The negative margin between the true class and the most offending wrong class (the paper's energy).
    """
    states, batch, _ = logits.shape
    index = labels.view(1, batch, 1).expand(states, batch, 1)
    true = logits.gather(2, index).squeeze(2)
    others = logits.scatter(2, index, float("-inf"))
    return -kappa * (true - others.amax(2)).mean(1)


def cross_entropy_energy(logits: torch.Tensor, labels: torch.Tensor, kappa: float = 10.0) -> torch.Tensor:
    """kappa * mean cross-entropy per state (an alternative energy)."""
    states, batch, classes = logits.shape
    losses = F.cross_entropy(logits.reshape(states * batch, classes), labels.repeat(states), reduction="none")
    return kappa * losses.view(states, batch).mean(1)


ENERGY_FUNCTIONS = {"margin": margin_energy, "cross_entropy": cross_entropy_energy}
