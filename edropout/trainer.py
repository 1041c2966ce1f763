"""A one-call trainer for the common case: SGD + cosine schedule, cross-entropy, EDropout search."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from edropout.config import EDropoutConfig
from edropout.controller import EDropout


def fit(
    model: nn.Module,
    loader: Iterable,
    epochs: int,
    config: EDropoutConfig | None = None,
    make_optimizer: Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer] | None = None,
    seed: int = 0,
    on_epoch: Callable[[int, EDropout], None] | None = None,
) -> tuple[nn.Module, EDropout]:
    """Train `model` with EDropout for `epochs`; return (pruned network, controller).

    `make_optimizer(params)` defaults to SGD(lr=0.05, momentum=0.9, weight_decay=5e-4); the
    learning rate follows a cosine schedule over all epochs, also across the physical shrink.
    """
    make_optimizer = make_optimizer or (lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=5e-4))
    x0, _ = next(iter(loader))
    ctrl = EDropout(model, x0[:1], epochs, config, seed)
    optimizer = make_optimizer(model.parameters())
    base_lrs = [group["lr"] for group in optimizer.param_groups]
    for epoch in range(epochs):
        model.train()
        for x, y in loader:
            ctrl.before_step(x, y)
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            ctrl.after_step(optimizer)
        if on_epoch is not None:
            on_epoch(epoch + 1, ctrl)
        if ctrl.end_epoch():
            optimizer = make_optimizer(model.parameters())
        scale = 0.5 * (1 + torch.cos(torch.tensor(torch.pi * (epoch + 1) / epochs))).item()
        for group, base in zip(optimizer.param_groups, base_lrs):
            group["lr"] = base * scale
    return ctrl.finalize(), ctrl
