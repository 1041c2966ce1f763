"""fpgm: remove the filters nearest the geometric median of their layer, the same fraction per layer.

Y. He, P. Liu, Z. Wang, Z. Hu, Y. Yang, "Filter Pruning via Geometric Median for Deep
Convolutional Neural Networks Acceleration", CVPR 2019. In every layer, each filter is scored by
the sum of its Euclidean distances to the layer's other filters; the filters with the smallest sum
(closest to the geometric median, hence the most replaceable) go, the same fraction in every layer
as in the paper (torch-pruning's FPGMImportance, local ranking; a channel group's score is the mean
over its coupled layers, e.g. the convs of one residual stage, and the input slices they feed).
The trained dense network is pruned once, physically shrunk and fine-tuned (the paper's "pruning
from a pre-trained model" setting, without its soft, per-epoch re-pruning). Note: torch-pruning
measures the distances between the filters' squared magnitudes |w|^2, not between the signed
weights as in the paper.
"""

import torch_pruning as tp

from benchmark.api import CellContext, MethodResult, register_method
from benchmark.cell.pruning import args_checker, post_training, prune_structured

check = args_checker()


def importance():
    return tp.importance.FPGMImportance(p=2, group_reduction="mean")


@register_method(
    "fpgm",
    citation="He et al. 2019, Filter Pruning via Geometric Median",
    granularity="structured",
    schedule="after_training",
    check_args=check,
    takes_sparsity=True,
)
def fpgm(ctx: CellContext) -> MethodResult:
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
