"""taylor: remove the channels whose removal changes the loss least, by a first-order Taylor estimate.

P. Molchanov, A. Mallya, S. Tyree, I. Frosio, J. Kautz, "Importance Estimation for Neural Network
Pruning", CVPR 2019. The trained dense network's channel groups are scored by the first-order
Taylor expansion of the loss, |sum_s g_s w_s| over each filter's weights (the paper's joint
criterion for a filter, torch-pruning's TaylorImportance(multivariable=True), averaged over the
layers coupled in a group), with the gradient of the cross-entropy averaged over `batches`
training mini-batches. Scores are compared over the whole network at once, unnormalised, as in the
paper; the lowest go, the network is physically shrunk and fine-tuned. Differences from the paper:
one-shot instead of iterative pruning, and the gradient is averaged over the mini-batches before
scoring (the paper averages the per-batch squared scores).
"""

import itertools

import torch.nn as nn
import torch_pruning as tp

from benchmark.api import CellContext, MethodResult, register_method
from benchmark.cell.pruning import KeepBest, PruningArgs, args_checker, positive_int, post_training, prune_structured
from benchmark.cell.training import make_loader

_check = args_checker(batches=4)


def check(method_args: dict) -> PruningArgs:
    """The common pruning settings plus `batches`, the training mini-batches the gradient is taken on."""
    args = _check(method_args)
    positive_int(args, "batches")
    return args


def importance():
    return tp.importance.TaylorImportance(group_reduction="mean", normalizer=None, multivariable=True)


def gradient_pass(dataset, batches: int, batch_size: int, seed: int):
    """A `prepare` for prune_structured: the mean cross-entropy gradient over `batches` fixed
    mini-batches of `dataset`, left in the `.grad` of the model it is given (earlier grads cleared).
    Runs in eval mode, as the network is scored, so BatchNorm statistics are left untouched."""
    data = list(itertools.islice(make_loader(dataset, batch_size, shuffle=True, seed=seed), batches))

    def prepare(model: nn.Module) -> None:
        was_training = model.training
        model.eval()
        model.zero_grad(set_to_none=True)
        device = next(model.parameters()).device
        for x, y in data:
            (nn.functional.cross_entropy(model(x.to(device)), y.to(device)) / len(data)).backward()
        model.train(was_training)

    return prepare


def copied_gradients(model: nn.Module):
    """A `prepare` that gives every unpruned copy of `model` (the trials of prune_structured's
    bisection) the gradients `model` holds now, so the batches are run once, not once per trial."""
    grads = {name: p.grad.detach().clone() for name, p in model.named_parameters() if p.grad is not None}

    def prepare(target: nn.Module) -> None:
        for name, p in target.named_parameters():
            p.grad = grads[name].clone() if name in grads else None

    return prepare


@register_method(
    "taylor",
    citation="Molchanov et al. 2019, Importance Estimation for Neural Network Pruning",
    granularity="structured",
    schedule="after_training",
    check_args=check,
    takes_sparsity=True,
)
def taylor(ctx: CellContext) -> MethodResult:
    args = check(ctx.cfg.method_args)
    gradients = gradient_pass(ctx.bundle.train, args.extra["batches"], ctx.cfg.train.batch_size, ctx.cfg.seed)

    def prune(model: nn.Module) -> None:
        gradients(model)
        prune_structured(
            model,
            ctx.example_inputs(),
            KeepBest(importance()),
            args.sparsity,
            global_pruning=True,
            round_to=args.round_to,
            prepare=copied_gradients(model),
        )
        model.zero_grad(set_to_none=True)  # the scoring gradients are not part of the network

    return post_training(ctx, args, "structured", prune)
