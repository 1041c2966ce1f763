"""global_magnitude: Deep Compression's pruning step, the EDropout paper's main comparator.

S. Han, J. Pool, J. Tran, W. Dally, "Learning both Weights and Connections for Efficient Neural
Networks", NeurIPS 2015 (and "Deep Compression", ICLR 2016). The trained network's smallest-
magnitude weights, ranked over all layers at once, are zeroed; the network is then fine-tuned
with the zeros held. (Quantisation and Huffman coding, the rest of Deep Compression, are not
part of the pruning comparison.)
"""

from benchmark.api import CellContext, MethodResult, register_method
from benchmark.cell.pruning import apply_masks, args_checker, magnitude_masks, post_training

check = args_checker()


@register_method(
    "global_magnitude",
    citation="Han et al. 2015, Learning both Weights and Connections (Deep Compression)",
    granularity="unstructured",
    schedule="after_training",
    check_args=check,
    takes_sparsity=True,
    tags=["magnitude"],
)
def global_magnitude(ctx: CellContext) -> MethodResult:
    args = check(ctx.cfg.method_args)
    return post_training(ctx, args, "unstructured", lambda m: apply_masks(magnitude_masks(m, args.sparsity, "global")))
