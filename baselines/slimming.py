"""slimming: Network Slimming, channels ranked by their BatchNorm scale after sparsity training.

Z. Liu, J. Li, Z. Shen, G. Huang, S. Yan, C. Zhang, "Learning Efficient Convolutional Networks
through Network Slimming", ICCV 2017. The network is trained from scratch with an L1 penalty
`l1 * sum |gamma|` on every BatchNorm scale (its subgradient `l1 * sign(gamma)` is added to the
BN weight gradients after each backward pass); channels are then ranked by |gamma| over the whole
network at once (torch-pruning's BNScaleImportance, unnormalised so the raw scales are compared
globally as in the paper), physically removed to the target parameter rate, and fine-tuned.
A channel normalised by several BNs (the residual stream of a ResNet stage) is scored by its
largest |gamma|: it can go only when every one of its scaling factors is small (the mean would
rank it by the zero-initialised last BN of each timm block). The dense checkpoint is not used:
sparsity training is this method's own training run.
"""

import time

import torch
import torch.nn as nn
import torch_pruning as tp

from benchmark.api import CellContext, Hooks, MethodResult, register_method
from benchmark.cell.pruning import KeepBest, PruningArgs, args_checker, prune_and_train, prune_structured
from benchmark.core.errors import UserError

_check = args_checker(l1=1e-4)


def check(method_args: dict) -> PruningArgs:
    """The common pruning settings plus `l1`, the penalty on |gamma| (the paper uses 1e-4 or 1e-5)."""
    args = _check(method_args)
    l1 = args.extra["l1"]
    if isinstance(l1, bool) or not isinstance(l1, (int, float)) or not l1 >= 0:
        raise UserError(f"bad value for 'method_args.l1': must be a number >= 0, got {l1!r}")
    return args


def importance():
    return tp.importance.BNScaleImportance(group_reduction="max", normalizer=None)


class BNL1Penalty(Hooks):
    """Adds the subgradient of `l1 * sum |gamma|` over all BatchNorm scales to their gradients."""

    def __init__(self, l1: float):
        self.l1 = l1

    @torch.no_grad()
    def after_backward(self, model: nn.Module) -> None:
        for module in model.modules():
            if (
                isinstance(module, nn.modules.batchnorm._BatchNorm)
                and module.weight is not None
                and module.weight.grad is not None
            ):
                module.weight.grad.add_(torch.sign(module.weight), alpha=self.l1)


@register_method(
    "slimming",
    citation="Liu et al. 2017, Learning Efficient Convolutional Networks through Network Slimming",
    granularity="structured",
    schedule="during_training",
    check_args=check,
    takes_sparsity=True,
    needs_batchnorm=True,
)
def slimming(ctx: CellContext) -> MethodResult:
    args = check(ctx.cfg.method_args)
    model = ctx.model
    finetune = args.finetune(ctx.cfg.train.epochs)
    start = time.perf_counter()
    sparsity_epochs = ctx.first_phase_epochs(finetune)
    ctx.train(model, epochs=sparsity_epochs, hooks=[BNL1Penalty(float(args.extra["l1"]))], desc="sparsity")
    sparsity_seconds = time.perf_counter() - start
    prune = lambda m: prune_structured(
        m,
        ctx.example_inputs(),
        KeepBest(importance()),
        args.sparsity,  # noqa: E731
        global_pruning=True,
        round_to=args.round_to,
    )
    return prune_and_train(
        ctx,
        args,
        "structured",
        model,
        prune,
        finetune,
        "finetune",
        seconds_before=sparsity_seconds,
        sparsity_train_seconds=sparsity_seconds,
    )
