"""synflow: data-free pruning at initialisation by iterative synaptic flow conservation.

H. Tanaka, D. Kunin, D. L. K. Yamins, S. Ganguli, "Pruning neural networks without any data by
iteratively conserving synaptic flow", NeurIPS 2020. The network is linearised (every parameter
and BN statistic replaced by its absolute value, BN in eval mode), an all-ones input of the
example input's shape is passed through, and each conv/linear weight is scored by |dR/dw * w|
with R the sum of the output. Over `iterations` rounds the kept fraction of prunable weights
follows the exponential schedule keep^(t/T), the lowest scores over all layers at once are
masked and the scores recomputed on the masked network, which avoids layer collapse. No
training data is used. The network itself is untouched (scoring runs on a copy, in float32 or,
if the flow overflows, float64, so the original signs and values stay), then masked and trained
for the full budget with the zeros held.

timm initialises the last BN of every residual block with a zero scale (`zero_init_last`), which
stops all synaptic flow through the residual branches; on the copy those all-zero BN scales are
set to 1 (PyTorch's default, the initialisation the paper used) so the branches can be ranked.
"""

import copy

import torch
import torch.nn as nn

from benchmark.api import CellContext, MethodResult, register_method
from benchmark.cell.pruning import (
    PruningArgs,
    apply_masks,
    args_checker,
    at_initialisation,
    positive_int,
    prunable_weights,
    unit_zero_bn_scales,
    weights_to_remove,
)
from benchmark.core.errors import UserError

_check = args_checker(iterations=100)
PRECISIONS = (torch.float32, torch.float64)  # the flow grows with depth: float64 if float32 overflows


def check(method_args: dict) -> PruningArgs:
    """The common settings plus `iterations`: the number of score-and-mask rounds."""
    args = _check(method_args)
    positive_int(args, "iterations")
    return args


def linearised(model: nn.Module, dtype: torch.dtype = torch.float32) -> nn.Module:
    """A copy of `model` in `dtype` with |value| for every parameter and buffer, in eval mode."""
    probe = unit_zero_bn_scales(copy.deepcopy(model)).to(dtype).eval()
    with torch.no_grad():
        for tensor in probe.state_dict().values():
            if tensor.is_floating_point():
                tensor.abs_()
    return probe


def _flow(probe: nn.Module, layers: list[nn.Module], shape: torch.Size) -> list[torch.Tensor] | None:
    """|dR/dw * w| for `layers` of the linearised `probe`, R = sum of its output on all-ones; None on overflow."""
    for param in probe.parameters():
        param.grad = None
    first = next(probe.parameters())
    flow = probe(torch.ones(shape, dtype=first.dtype, device=first.device)).sum()
    if not torch.isfinite(flow):
        return None
    flow.backward()
    return [(layer.weight.grad * layer.weight).detach().abs() for layer in layers]


def _overflow(model: nn.Module) -> UserError:
    return UserError(
        f"SynFlow's synaptic flow through {type(model).__name__} overflows float64; this network cannot be scored"
    )


def synflow_scores(model: nn.Module, example_inputs: torch.Tensor) -> dict[nn.Module, torch.Tensor]:
    """One round of SynFlow scores; only the shape of `example_inputs` is used (data-free)."""
    for dtype in PRECISIONS:
        probe = linearised(model, dtype)
        scores = _flow(probe, prunable_weights(probe), example_inputs.shape)
        if scores is not None:
            return dict(zip(prunable_weights(model), scores))
    raise _overflow(model)


def _drop_lowest(scores: list[torch.Tensor], k: int) -> list[torch.Tensor]:
    """Keep-masks dropping exactly the `k` lowest scores over all tensors.

    The same result as `masks_from_scores(..., 'global')` up to the order among equal scores, but
    by a k-th value threshold: several times faster than its top-k at the large `k` of the later rounds.
    """
    flat = torch.cat([s.flatten() for s in scores])
    drop = torch.zeros_like(flat, dtype=torch.bool)
    if k:
        threshold = torch.kthvalue(flat, k).values
        drop = flat < threshold
        drop[torch.nonzero(flat == threshold).flatten()[: k - int(drop.sum())]] = True
    masks, at = [], 0
    for s in scores:
        masks.append(~drop[at : at + s.numel()].view_as(s))
        at += s.numel()
    return masks


def synflow_masks(
    model: nn.Module, example_inputs: torch.Tensor, k: int, iterations: int
) -> dict[nn.Module, torch.Tensor]:
    """Keep-masks dropping `k` weights over all layers, in `iterations` rounds of the exponential schedule."""
    for dtype in PRECISIONS:
        masks = _iterate(linearised(model, dtype), example_inputs.shape, k, iterations)
        if masks is not None:
            return dict(zip(prunable_weights(model), masks))
    raise _overflow(model)


def _iterate(probe: nn.Module, shape: torch.Size, k: int, iterations: int) -> list[torch.Tensor] | None:
    layers = prunable_weights(probe)
    masks = [torch.ones_like(layer.weight, dtype=torch.bool) for layer in layers]
    total = sum(mask.numel() for mask in masks)
    keep = 1.0 - k / total
    for t in range(1, iterations + 1):
        with torch.no_grad():  # the masks only grow, so masking in place is the masked linearised network
            for layer, mask in zip(layers, masks):
                layer.weight.mul_(mask)
        flow = _flow(probe, layers, shape)
        if flow is None:
            return None
        scores = [torch.where(mask, score, -1.0) for mask, score in zip(masks, flow)]  # masked stay masked
        k_t = k if t == iterations else round(total * (1.0 - keep ** (t / iterations)))
        masks = _drop_lowest(scores, k_t)
    return masks


@register_method(
    "synflow",
    citation="Tanaka et al. 2020, Pruning neural networks without any data by iteratively conserving synaptic flow",
    granularity="unstructured",
    schedule="at_init",
    check_args=check,
    takes_sparsity=True,
)
def synflow(ctx: CellContext) -> MethodResult:
    args = check(ctx.cfg.method_args)

    def prune(model):
        k = weights_to_remove(model, args.sparsity)
        apply_masks(synflow_masks(model, ctx.example_inputs(), k, args.extra["iterations"]))

    return at_initialisation(ctx, args, "unstructured", prune)
