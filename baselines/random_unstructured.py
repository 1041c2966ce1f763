"""random_unstructured: zero randomly chosen weights, the same fraction in every layer.

The random baseline for unstructured methods (Blalock et al. 2020). Starts from the dense
network, fine-tunes with the zeros held.
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


@register_method(
    "random_unstructured",
    citation="random weights (Blalock et al. 2020 baseline)",
    granularity="unstructured",
    schedule="after_training",
    check_args=check,
    takes_sparsity=True,
    tags=["random"],
)
def random_unstructured(ctx: CellContext) -> MethodResult:
    args = check(ctx.cfg.method_args)
    generator = torch.Generator().manual_seed(ctx.cfg.seed)

    def prune(model):
        # drawn on the CPU (the same scores on every device), then moved to the weights' device
        scores = {m: torch.rand(m.weight.shape, generator=generator) for m in prunable_weights(model)}
        scores = {m: s.to(m.weight.device) for m, s in scores.items()}
        apply_masks(masks_from_scores(scores, weights_to_remove(model, args.sparsity), "layer"))

    return post_training(ctx, args, "unstructured", prune)
