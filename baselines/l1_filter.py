"""l1_filter: remove the filters with the smallest L1 norm, the same fraction in every layer.

H. Li, A. Kadav, I. Durdanovic, H. Samet, H. P. Graf, "Pruning Filters for Efficient ConvNets",
ICLR 2017. In every layer the same fraction of filters goes, those with the smallest L1 norm of
their own weights (torch-pruning's MagnitudeImportance(p=1, group_reduction="first"): the norm of
the group's first layer, the filter itself, not summed over the layers coupled to it). Coupled
channels (residual streams) are removed together; the network is physically shrunk and fine-tuned.
"""

import torch_pruning as tp

from benchmark.api import CellContext, MethodResult, register_method
from benchmark.cell.pruning import args_checker, post_training, prune_structured

check = args_checker()


def importance():
    return tp.importance.MagnitudeImportance(p=1, normalizer=None, group_reduction="first")


@register_method(
    "l1_filter",
    citation="Li et al. 2017, Pruning Filters for Efficient ConvNets",
    granularity="structured",
    schedule="after_training",
    check_args=check,
    takes_sparsity=True,
)
def l1_filter(ctx: CellContext) -> MethodResult:
    args = check(ctx.cfg.method_args)
    prune = lambda m: prune_structured(
        m,
        ctx.example_inputs(),
        importance(),
        args.sparsity,  # noqa: E731
        global_pruning=False,
        round_to=args.round_to,
    )
    return post_training(ctx, args, "structured", prune)
