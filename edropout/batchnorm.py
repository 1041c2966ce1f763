"""BatchNorm for networks whose units are switched on and off: statistics per state, and recalibration.

While states are scored (`per_state_batch_statistics`), each state's copy of the batch is normalised
with its own batch statistics, in one forward pass for the whole population.

During the search every training step runs the *masked* network, so the running statistics of
BatchNorm describe the pruned network's activations. The full network (every unit on, the paper's
F) sees different activations downstream of the restored units; evaluated with the masked network's
statistics it is close to chance. `recalibrate_batchnorm` re-estimates them on training batches.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, batches: Iterable, max_batches: int | None = None) -> int:
    """Re-estimate every BatchNorm's running statistics of `model` on `batches`, in place.

    `batches` yields inputs `x` or `(x, y, ...)` tuples (a training DataLoader works as is). The
    running statistics are reset and re-estimated as a cumulative average (momentum None) over at
    most `max_batches` batches, with training-mode forward passes under no_grad (as
    torch.optim.swa_utils.update_bn does); each module's train/eval mode and BatchNorm's momentum
    are restored afterwards. Returns the number of batches used; raises ValueError if there were none.
    """
    if max_batches is not None and max_batches <= 0:
        raise ValueError(f"recalibrate_batchnorm max_batches must be > 0 or None, got {max_batches}")
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms:
        return 0
    modes = [(m, m.training) for m in model.modules()]
    saved = [(m.momentum, m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone()) for m in norms]
    device = next(iter(model.parameters()), norms[0].running_mean).device
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    used = 0
    try:
        for batch in batches:
            if max_batches is not None and used >= max_batches:
                break
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            model(x.to(device))
            used += 1
    finally:
        for m, (momentum, mean, var, count) in zip(norms, saved):
            m.momentum = momentum
            if used == 0:  # nothing seen: leave the statistics as they were
                m.running_mean.copy_(mean)
                m.running_var.copy_(var)
                m.num_batches_tracked.copy_(count)
        for module, training in modes:
            module.training = training
    if used == 0:
        raise ValueError("recalibrate_batchnorm got no batches")
    return used


def _per_state_forward(norm: nn.modules.batchnorm._BatchNorm, states: int):
    """`norm`'s forward with each of `states` equal chunks of the batch normalised by its own statistics."""
    post = []
    if type(norm).forward is not nn.modules.batchnorm._BatchNorm.forward:
        if hasattr(norm, "act") and hasattr(norm, "drop"):  # timm's BatchNormAct2d: BN, then dropout, then act
            post = [norm.drop, norm.act]
        else:
            raise TypeError(
                f"cannot score states with per-state batch statistics: {type(norm).__name__} has its own "
                f"forward (use energy_norm='running')"
            )

    def forward(x: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0] // states
        rest = x.shape[2:]
        # (S*B, C, ...) -> (B, S*C, ...): one batch_norm call gives every state's channels their own statistics
        grouped = x.reshape(states, batch, x.shape[1], *rest).transpose(0, 1).reshape(batch, -1, *rest)
        weight = None if norm.weight is None else norm.weight.repeat(states)
        bias = None if norm.bias is None else norm.bias.repeat(states)
        if grouped[:, :1].numel() == 1:  # one value per channel and state: no batch statistics exist
            mean, var = norm.running_mean.repeat(states), norm.running_var.repeat(states)
            y = F.batch_norm(grouped, mean, var, weight, bias, False, 0.0, norm.eps)
        else:
            y = F.batch_norm(grouped, None, None, weight, bias, True, 0.0, norm.eps)
        y = y.reshape(batch, states, x.shape[1], *rest).transpose(0, 1).reshape(x.shape)
        for module in post:
            y = module(y)
        return y

    return forward


@contextmanager
def per_state_batch_statistics(model: nn.Module, states: int) -> Iterator[None]:
    """Inside, every BatchNorm of `model` normalises each of `states` equal chunks of its input batch
    with that chunk's own batch statistics, and leaves its running statistics alone.

    This is training-mode BatchNorm (the normalisation the authors' code scored states with, its
    model never being in eval mode) for S states measured in one forward pass of S copies of a batch:
    chunk s is state s's copy. Running statistics and `num_batches_tracked` do not change.
    """
    if states <= 0:
        raise ValueError(f"states must be > 0, got {states}")
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    patched = []
    try:
        for norm in norms:
            norm.forward = _per_state_forward(norm, states)
            patched.append(norm)
        yield
    finally:
        for norm in patched:
            del norm.forward
