"""snip: single-shot pruning at initialisation by connection sensitivity.

N. Lee, T. Ajanthan, P. H. S. Torr, "SNIP: Single-shot Network Pruning based on Connection
Sensitivity", ICLR 2019. Before any training, every conv/linear weight is scored by |dL/dw * w|
(the sensitivity of the loss to removing the connection), with the gradient summed over
`batches` training mini-batches of `train.batch_size`; the lowest scores over all layers at once
are zeroed and the network is trained for the full budget with the zeros held.

Scoring runs on a copy in training mode, so the network keeps its initial state (no gradients,
no BN statistics). timm initialises the last BN of every residual block with a zero scale
(`zero_init_last`), which makes every gradient inside the residual branches exactly zero at
initialisation; on the copy those all-zero BN scales are set to 1 (PyTorch's default, the
initialisation SNIP was published with) so the branches can be ranked at all.
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
    masks_from_scores,
    positive_int,
    prunable_weights,
    unit_zero_bn_scales,
    weights_to_remove,
)
from benchmark.cell.training import make_loader
from benchmark.core.errors import UserError

_check = args_checker(batches=1)


def check(method_args: dict) -> PruningArgs:
    """The common settings plus `batches`: how many mini-batches the gradient is summed over."""
    args = _check(method_args)
    positive_int(args, "batches")
    return args


def snip_scores(model: nn.Module, batches) -> dict[nn.Module, torch.Tensor]:
    """|dL/dw * w| for every prunable layer of `model`, the gradient summed over `batches` of (x, y).

    Computed on a copy (training mode); the keys are `model`'s own modules.
    """
    probe = unit_zero_bn_scales(copy.deepcopy(model)).train()
    layers = prunable_weights(probe)
    for param in probe.parameters():
        param.grad = None
    device = next(probe.parameters()).device
    for x, y in batches:
        nn.functional.cross_entropy(probe(x.to(device)), y.to(device)).backward()
    return {
        original: (layer.weight.grad * layer.weight).detach().abs()
        for original, layer in zip(prunable_weights(model), layers)
    }


def training_batches(ctx: CellContext, count: int):
    """The first `count` shuffled training mini-batches (cycling if the set is smaller)."""
    loader = make_loader(
        ctx.bundle.train,
        ctx.cfg.train.batch_size,
        shuffle=True,
        seed=ctx.cfg.seed,
        num_workers=ctx.cfg.data.num_workers,
    )
    if len(loader) == 0:
        raise UserError("snip needs training data to score the weights, but the training set is empty")
    taken = 0
    while taken < count:
        for batch in loader:
            yield batch
            taken += 1
            if taken == count:
                return


@register_method(
    "snip",
    citation="Lee et al. 2019, SNIP: Single-shot Network Pruning based on Connection Sensitivity",
    granularity="unstructured",
    schedule="at_init",
    check_args=check,
    takes_sparsity=True,
)
def snip(ctx: CellContext) -> MethodResult:
    args = check(ctx.cfg.method_args)

    def prune(model):
        scores = snip_scores(model, training_batches(ctx, args.extra["batches"]))
        apply_masks(masks_from_scores(scores, weights_to_remove(model, args.sparsity), "global"))

    return at_initialisation(ctx, args, "unstructured", prune)
