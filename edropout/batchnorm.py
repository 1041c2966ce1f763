"""BatchNorm statistics for a network whose units were switched on or off after training.

During the search every training step runs the *masked* network, so the running statistics of
BatchNorm describe the pruned network's activations. The full network (every unit on, the paper's
F) sees different activations downstream of the restored units; evaluated with the masked network's
statistics it is close to chance. `recalibrate_batchnorm` re-estimates them on training batches.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
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
