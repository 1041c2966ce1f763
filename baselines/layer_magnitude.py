"""layer_magnitude: magnitude pruning with the same rate in every layer.

The layer-wise variant of Han et al. 2015 (NeurIPS), the usual "uniform" baseline (see also
Blalock et al. 2020 and Lee et al. 2021): each conv/linear layer loses the same fraction of its
smallest-magnitude weights; then fine-tuning with the zeros held.
"""

from benchmark.api import CellContext, MethodResult, register_method
from benchmark.cell.pruning import apply_masks, args_checker, magnitude_masks, post_training

check = args_checker()


@register_method(
    "layer_magnitude",
    citation="Han et al. 2015, layer-wise (uniform) magnitude pruning",
    granularity="unstructured",
    schedule="after_training",
    check_args=check,
    takes_sparsity=True,
    tags=["magnitude"],
)
def layer_magnitude(ctx: CellContext) -> MethodResult:
    args = check(ctx.cfg.method_args)
    return post_training(ctx, args, "unstructured", lambda m: apply_masks(magnitude_masks(m, args.sparsity, "layer")))
