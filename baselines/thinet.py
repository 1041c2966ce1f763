"""thinet: remove the channels whose absence the next layer notices least.

J.-H. Luo, J. Wu, W. Lin, "ThiNet: A Filter Level Pruning Method for Deep Neural Network
Compression", ICCV 2017. For every channel group, sampled activations of the layers that consume
it give each channel's contribution to those layers' outputs (the contribution of input channel c
at a sampled output position is the conv's partial sum over c's patch). ThiNet's greedy selection
then removes, one at a time, the channel that keeps the summed contribution of the removed set
smallest (the next layer's reconstruction error); the removal order is the ranking. The same
fraction goes in every layer (as in the paper); the network is physically shrunk and fine-tuned.
Not implemented: the paper's least-squares rescaling of the kept channels (fine-tuning follows).
Settings: `samples` (output values sampled per consumer layer, default 2000), `batches` (default 2).
"""

from __future__ import annotations

import itertools

import torch
import torch.nn as nn
import torch.nn.functional as F

from benchmark.api import CellContext, MethodResult, register_method
from benchmark.cell.pruning import PruningArgs, args_checker, positive_int, post_training, prune_structured
from benchmark.cell.training import make_loader

_check = args_checker(samples=2000, batches=2)


def check(method_args: dict) -> PruningArgs:
    args = _check(method_args)
    positive_int(args, "samples")
    positive_int(args, "batches")
    return args


def channel_contributions(
    conv: nn.Conv2d, inputs: torch.Tensor, samples: int, generator: torch.Generator
) -> torch.Tensor:
    """(in_channels, samples): input channel c's part of `samples` random output values of `conv`."""
    patches = F.unfold(inputs, conv.kernel_size, dilation=conv.dilation, padding=conv.padding, stride=conv.stride)
    n, _, positions = patches.shape
    k = conv.kernel_size[0] * conv.kernel_size[1]
    patches = patches.view(n, conv.in_channels, k, positions)
    # drawn from the CPU generator (the same samples on every device), used where the inputs are
    pick_n = torch.randint(0, n, (samples,), generator=generator).to(inputs.device)
    pick_pos = torch.randint(0, positions, (samples,), generator=generator).to(inputs.device)
    pick_out = torch.randint(0, conv.out_channels, (samples,), generator=generator).to(inputs.device)
    x = patches[pick_n, :, :, pick_pos]  # (samples, in_channels, k)
    w = conv.weight.detach().view(conv.out_channels, conv.in_channels, k)[pick_out]  # (samples, in_channels, k)
    return (x * w).sum(-1).T


def greedy_order(contributions: torch.Tensor) -> torch.Tensor:
    """ThiNet's greedy selection: channels in the order they are removed (the least missed first)."""
    channels = contributions.shape[0]
    removed: list[int] = []
    left = list(range(channels))
    total = torch.zeros(contributions.shape[1], dtype=contributions.dtype, device=contributions.device)
    for _ in range(channels):
        errors = ((total[None, :] + contributions[left]) ** 2).sum(1)
        best = left[int(errors.argmin())]
        removed.append(best)
        left.remove(best)
        total = total + contributions[best]
    return torch.as_tensor(removed)


class ThiNetImportance:
    """torch-pruning importance: a channel's score is its place in ThiNet's greedy removal order."""

    def __init__(self, samples: int, seed: int):
        self.samples, self.seed = samples, seed
        self.inputs: dict[nn.Module, torch.Tensor] = {}

    def record(self, model: nn.Module, batches: list[torch.Tensor]) -> None:
        """Sample the inputs of every conv of `model` (the copy torch-pruning is about to prune)."""
        self.inputs = {}

        def keep_input(module, inputs, output):  # returns None: the output is left alone
            self.inputs[module] = inputs[0].detach()

        hooks = [
            m.register_forward_hook(keep_input) for m in model.modules() if isinstance(m, nn.Conv2d) and m.groups == 1
        ]
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                model(torch.cat(batches).to(next(model.parameters()).device))
        finally:
            for hook in hooks:
                hook.remove()
            model.train(was_training)

    def __call__(self, group) -> torch.Tensor | None:
        generator = torch.Generator().manual_seed(self.seed)
        parts = []
        for dep, idxs in group:
            module = dep.target.module
            if getattr(dep.handler, "__name__", "") == "prune_in_channels" and module in self.inputs:
                parts.append(channel_contributions(module, self.inputs[module], self.samples, generator)[idxs])
        if not parts:
            return None  # no consumer conv to reconstruct (e.g. the classifier's input): torch-pruning skips it
        order = greedy_order(torch.cat(parts, dim=1).double()).cpu()
        scores = torch.empty(len(order))
        scores[order] = torch.arange(len(order), dtype=torch.float32)  # removed first = least important
        return scores


@register_method(
    "thinet",
    citation="Luo et al. 2017, ThiNet: A Filter Level Pruning Method",
    granularity="structured",
    schedule="after_training",
    check_args=check,
    takes_sparsity=True,
)
def thinet(ctx: CellContext) -> MethodResult:
    args = check(ctx.cfg.method_args)
    loader = make_loader(ctx.bundle.train, ctx.cfg.train.batch_size, shuffle=True, seed=ctx.cfg.seed)
    batches = [x for x, _ in itertools.islice(loader, args.extra["batches"])]
    importance = ThiNetImportance(args.extra["samples"], ctx.cfg.seed)
    prune = lambda m: prune_structured(
        m,
        ctx.example_inputs(),
        importance,
        args.sparsity,  # noqa: E731
        global_pruning=False,
        round_to=args.round_to,
        prepare=lambda copy: importance.record(copy, batches),
    )
    return post_training(ctx, args, "structured", prune)
