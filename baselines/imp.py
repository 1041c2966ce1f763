"""imp: iterative magnitude pruning with weight rewinding (the lottery-ticket procedure).

J. Frankle, M. Carbin, "The Lottery Ticket Hypothesis: Finding Sparse, Trainable Neural
Networks", ICLR 2019; rewinding to an early epoch instead of initialisation from J. Frankle,
G. K. Dziugaite, D. M. Roy, M. Carbin, "Linear Mode Connectivity and the Lottery Ticket
Hypothesis", ICML 2020. The network is trained from scratch for `train.epochs`, its weights saved
at the end of epoch `rewind_epoch` (0: the initialisation). Then, for `rounds` rounds, the
smallest-magnitude surviving conv/linear weights over all layers at once are masked, the same
fraction of the remaining prunable weights each round ((1 - target)^(1/rounds) of them kept, the
target being the share of prunable weights `sparsity` of all parameters requires), every
parameter and BN statistic is rewound to the saved epoch with the masks kept, and the network is
retrained for the fine-tuning budget. The dense phase is one training run with one learning-rate
schedule (the same as the dense baseline's); the weights are saved by an end-of-epoch hook.
Sanity-check variants act on the last round's mask.
"""

import copy
import time

import torch
import torch.nn as nn

from benchmark.api import CellContext, Hooks, MethodResult, register_method
from benchmark.cell.measure import count_params
from benchmark.cell.pruning import (
    PruningArgs,
    apply_masks,
    apply_variant,
    args_checker,
    make_permanent,
    masks_from_scores,
    prunable_weights,
    pruning_metrics,
    weights_to_remove,
)
from benchmark.core.errors import UserError

_check = args_checker(rewind_epoch=1, rounds=3)


def check(method_args: dict) -> PruningArgs:
    """The common settings plus `rewind_epoch` (>= 0, at most train.epochs) and `rounds` (>= 1)."""
    args = _check(method_args)
    for name, low in (("rewind_epoch", 0), ("rounds", 1)):
        value = args.extra[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise UserError(f"bad value for 'method_args.{name}': must be an integer >= {low}, got {value!r}")
    return args


class SaveAtEpoch(Hooks):
    """Keeps a copy of the state dict at the end of one epoch."""

    def __init__(self, epoch: int):
        self.epoch, self.state = epoch, None

    def end_epoch(self, model, epoch):
        if epoch == self.epoch:
            self.state = copy.deepcopy(model.state_dict())
        return {}


def round_targets(prunable: int, k: int, rounds: int) -> list[int]:
    """Weights masked after each round: the same kept fraction of the survivors every round, `k` at the end."""
    keep = 1.0 - k / prunable
    return [round(prunable * (1.0 - keep ** (r / rounds))) for r in range(1, rounds)] + [k]


def magnitude_round_masks(model: nn.Module, k: int) -> dict[nn.Module, torch.Tensor]:
    """Keep-masks dropping the `k` smallest |w| over all layers; already masked weights stay masked."""
    scores = {}
    for module in prunable_weights(model):
        if hasattr(module, "weight_mask"):  # module.weight is stale after an optimiser step: recompute it
            mask = module.weight_mask.bool()
            scores[module] = torch.where(mask, (module.weight_orig * module.weight_mask).detach().abs(), -1.0)
        else:
            scores[module] = module.weight.detach().abs()
    return masks_from_scores(scores, k, "global")


def prune_and_rewind(model: nn.Module, snapshot: dict[str, torch.Tensor], k: int) -> dict[nn.Module, torch.Tensor]:
    """One IMP round: mask `k` weights by magnitude, rewind everything to `snapshot`, keep the masks."""
    masks = magnitude_round_masks(model, k)
    make_permanent(model)
    model.load_state_dict(snapshot)
    apply_masks(masks)
    return masks


@register_method(
    "imp",
    citation="Frankle & Carbin 2019, The Lottery Ticket Hypothesis; Frankle et al. 2020, "
    "Linear Mode Connectivity and the Lottery Ticket Hypothesis (rewinding)",
    granularity="unstructured",
    schedule="iterative",
    check_args=check,
    takes_sparsity=True,
)
def imp(ctx: CellContext) -> MethodResult:
    args = check(ctx.cfg.method_args)
    rewind_epoch, rounds = args.extra["rewind_epoch"], args.extra["rounds"]
    epochs = ctx.cfg.train.epochs
    per_round = args.finetune(epochs)
    if ctx.cfg.train.budget == "equal":
        per_round = max(1, per_round // rounds)  # the rounds share the fine-tuning budget
    first = ctx.first_phase_epochs(rounds * per_round)
    if rewind_epoch > first:
        raise UserError(
            f"bad value for 'method_args.rewind_epoch': must be at most the epochs before the first pruning "
            f"({first}), got {rewind_epoch}"
        )
    model = ctx.model
    dense = copy.deepcopy(model)
    dense_params = count_params(dense)["params"]
    k = weights_to_remove(model, args.sparsity)
    targets = round_targets(sum(m.weight.numel() for m in prunable_weights(model)), k, rounds)

    start = time.perf_counter()
    saver = SaveAtEpoch(rewind_epoch)
    if rewind_epoch == 0:
        saver.state = copy.deepcopy(model.state_dict())
    ctx.train(model, epochs=first, hooks=[saver], desc="dense")
    dense_seconds = time.perf_counter() - start
    prune_seconds = finetune_seconds = 0.0
    for r, target in enumerate(targets, 1):
        begin = time.perf_counter()
        prune_and_rewind(model, saver.state, target)
        if r == rounds:
            dense.load_state_dict(saver.state)
            model = apply_variant(ctx, args, "unstructured", dense, model)
        prune_seconds += time.perf_counter() - begin
        begin = time.perf_counter()
        ctx.train(model, epochs=per_round, desc=f"round {r}/{rounds}")
        finetune_seconds += time.perf_counter() - begin
    make_permanent(model)
    return MethodResult(
        model,
        pruning_metrics(
            ctx,
            args,
            dense_params,
            model,
            dense_seconds=dense_seconds,
            prune_seconds=prune_seconds,
            finetune_seconds=finetune_seconds,
            total_train_seconds=dense_seconds + prune_seconds + finetune_seconds,
            rounds=rounds,
            rewind_epoch=rewind_epoch,
        ),
    )
