"""lamp: layer-adaptive magnitude pruning of the trained network.

J. Lee, S. Park, S. Mo, S. Ahn, J. Shin, "Layer-adaptive Sparsity for the Magnitude-based
Pruning", ICLR 2021. Each weight u of a conv/linear layer gets the LAMP score
w_u^2 / sum_{v in the layer, w_v^2 >= w_u^2} w_v^2 (its squared magnitude over the squared
magnitudes of all weights of the layer that are at least as large: sort ascending, reverse
cumulative sum); the lowest scores over all layers at once are zeroed, which sets the per-layer
sparsities automatically (a layer's largest weight scores 1 and is always kept). The trained dense
network is pruned once and fine-tuned with the zeros held.
"""

import torch

from benchmark.api import CellContext, MethodResult, register_method
from benchmark.cell.pruning import (
    apply_masks,
    args_checker,
    masks_from_scores,
    post_training,
    prunable_weights,
    weights_to_remove,
)

check = args_checker()


def lamp_scores(weight: torch.Tensor) -> torch.Tensor:
    """The LAMP score of every entry of one layer's weight (ties share the larger denominator)."""
    squared = weight.detach().flatten().double() ** 2
    ordered, order = torch.sort(squared)
    tail = ordered.flip(0).cumsum(0).flip(0)  # tail[i] = sum of ordered[i:]
    first = torch.searchsorted(ordered, ordered, side="left")  # equal values: every one of them counts
    denominator = tail[first]
    score = torch.where(
        denominator > 0, ordered / denominator.clamp_min(torch.finfo(torch.float64).tiny), torch.zeros_like(ordered)
    )
    out = torch.empty_like(score)
    out[order] = score
    return out.view_as(weight)


@register_method(
    "lamp",
    citation="Lee et al. 2021, Layer-adaptive Sparsity for the Magnitude-based Pruning (LAMP)",
    granularity="unstructured",
    schedule="after_training",
    check_args=check,
    takes_sparsity=True,
)
def lamp(ctx: CellContext) -> MethodResult:
    args = check(ctx.cfg.method_args)

    def prune(model):
        scores = {m: lamp_scores(m.weight) for m in prunable_weights(model)}
        apply_masks(masks_from_scores(scores, weights_to_remove(model, args.sparsity), "global"))

    return post_training(ctx, args, "unstructured", prune)
