"""random_structured: remove randomly chosen channel groups, the same fraction in every layer.

The random baseline every structured method must beat (Blalock et al. 2020, "What is the state
of neural network pruning?"; Liu et al. 2019, "Rethinking the value of network pruning").
Starts from the dense network, physically shrinks it, fine-tunes.
"""

import torch
import torch_pruning as tp

from benchmark.api import CellContext, MethodResult, register_method
from benchmark.cell.pruning import args_checker, post_training, prune_structured

check = args_checker()


@register_method(
    "random_structured",
    citation="random channels (Blalock et al. 2020 baseline)",
    granularity="structured",
    schedule="after_training",
    check_args=check,
    takes_sparsity=True,
    tags=["random"],
)
def random_structured(ctx: CellContext) -> MethodResult:
    args = check(ctx.cfg.method_args)
    torch.manual_seed(ctx.cfg.seed)
    prune = lambda m: prune_structured(
        m,
        ctx.example_inputs(),
        tp.importance.RandomImportance(),  # noqa: E731
        args.sparsity,
        global_pruning=False,
        round_to=args.round_to,
    )
    return post_training(ctx, args, "structured", prune)
