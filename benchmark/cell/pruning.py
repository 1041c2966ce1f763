"""What pruning methods share: their settings, the dense starting point, structured pruning to a
parameter budget (physically, with torch-pruning), unstructured masks (torch.nn.utils.prune), and
the sanity-check variants of Frankle et al. 2021 ("Pruning neural networks at initialization: why
are we missing the mark?"): `shuffled` (same per-layer rates, random positions) and `reinit`
(same mask or structure, re-initialised weights).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

import torch
import torch.nn as nn

from benchmark.cell.context import CellContext
from benchmark.cell.measure import count_params
from benchmark.cell.spec import MethodResult
from benchmark.cell.structured import KeepBest, kept_per_group, prune_structured, shuffled_structure
from benchmark.cell.unstructured import (
    apply_masks,
    magnitude_masks,
    make_permanent,
    masks_from_scores,
    prunable_weights,
    shuffle_masks,
    weights_to_remove,
)
from benchmark.core import metrics as M
from benchmark.core.errors import UserError

VARIANTS = ("none", "shuffled", "reinit")


@dataclass
class PruningArgs:
    """Settings every pruning method accepts (as `--set method_args.<name>=...`)."""

    sparsity: float | str = 0.5
    """Target parameter pruning rate in [0, 1), or 'matched': the rate EDropout reached for the
    same arch, dataset and seed (resolved from that cell's result before the run)."""
    finetune_epochs: int | None = None
    """Fine-tuning budget after pruning for post-training methods; None: half of train.epochs."""
    variant: str = "none"
    """Sanity check: 'shuffled' (same per-layer rates, random positions) or 'reinit' (same mask or
    structure, re-initialised weights), after Frankle et al. 2021."""
    round_to: int | None = None
    """Structured methods: keep channel counts multiples of this (hardware-friendly widths)."""
    matched_from: str | None = None
    """Set by the harness when sparsity was 'matched': the EDropout result it was read from."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Method-specific settings (declared by the method)."""

    def finetune(self, train_epochs: int) -> int:
        return self.finetune_epochs if self.finetune_epochs is not None else max(1, train_epochs // 2)


def args_checker(**extra_defaults: Any) -> Callable[[dict], PruningArgs]:
    """A `check_args` for `register_method`: common pruning settings plus the method's own ones."""
    common = {f.name for f in fields(PruningArgs)} - {"extra"}

    def check(method_args: dict) -> PruningArgs:
        unknown = sorted(set(method_args) - common - set(extra_defaults))
        if unknown:
            valid = sorted(common | set(extra_defaults))
            raise UserError(f"unknown method_args {unknown[0]!r}; valid: {', '.join(valid)}")
        args = PruningArgs(
            **{k: v for k, v in method_args.items() if k in common},
            extra={**extra_defaults, **{k: v for k, v in method_args.items() if k in extra_defaults}},
        )
        if args.sparsity != "matched":
            if (
                isinstance(args.sparsity, bool)
                or not isinstance(args.sparsity, (int, float))
                or not 0.0 <= args.sparsity < 1.0
            ):
                raise UserError(
                    f"bad value for 'method_args.sparsity': must be a rate in [0, 1) or 'matched', "
                    f"got {args.sparsity!r}"
                )
        if args.variant not in VARIANTS:
            raise UserError(f"bad value for 'method_args.variant': {args.variant!r}; valid: {', '.join(VARIANTS)}")
        if args.finetune_epochs is not None and (not isinstance(args.finetune_epochs, int) or args.finetune_epochs < 0):
            raise UserError(
                f"bad value for 'method_args.finetune_epochs': must be an integer >= 0, got {args.finetune_epochs!r}"
            )
        if args.round_to is not None and (not isinstance(args.round_to, int) or args.round_to < 1):
            raise UserError(f"bad value for 'method_args.round_to': must be an integer >= 1, got {args.round_to!r}")
        return args

    return check


def reinitialise(model: nn.Module, seed: int) -> nn.Module:
    """Fresh weights (PyTorch's default initialisation) for every layer, masks and structure kept."""
    torch.manual_seed(seed)
    for module in model.modules():
        if hasattr(module, "weight_orig"):  # an unstructured mask: re-draw the underlying weights
            with torch.no_grad():
                fresh = torch.empty_like(module.weight_orig)
                nn.init.kaiming_uniform_(fresh, a=math.sqrt(5))
                module.weight_orig.copy_(fresh)
        elif hasattr(module, "reset_parameters") and module is not model:
            module.reset_parameters()
    return model


def unit_zero_bn_scales(model: nn.Module) -> nn.Module:
    """Set BN scales that are entirely zero (timm's zero_init_last) to 1, in place.

    At initialisation such a scale makes every gradient inside the residual branch zero, which
    would leave gradient-based scores (SNIP, SynFlow) nothing to rank; the papers' networks start at 1.
    """
    with torch.no_grad():
        for module in model.modules():
            if (
                isinstance(module, nn.modules.batchnorm._BatchNorm)
                and module.weight is not None
                and not torch.any(module.weight)
            ):
                module.weight.fill_(1.0)
    return model


def positive_int(args: PruningArgs, name: str) -> int:
    """A method-specific setting that must be an integer >= 1 (checked before anything runs)."""
    value = args.extra[name]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"bad value for 'method_args.{name}': must be an integer >= 1, got {value!r}")
    return value


# -- the protocols ----------------------------------------------------------------------------------


def _current_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: m.weight_mask.detach().clone() for name, m in model.named_modules() if hasattr(m, "weight_mask")}


def apply_variant(
    ctx: CellContext, args: PruningArgs, granularity: str, dense: nn.Module, pruned: nn.Module
) -> nn.Module:
    """Turn a pruned network into its sanity-check variant (or return it unchanged)."""
    if args.variant == "none":
        return pruned
    generator = torch.Generator().manual_seed(ctx.cfg.seed + 7919)
    if args.variant == "reinit":
        return reinitialise(pruned, ctx.cfg.seed + 7919)
    if granularity == "structured":
        return shuffled_structure(dense, pruned, ctx.example_inputs(), generator)
    fresh = copy.deepcopy(dense)
    modules = dict(fresh.named_modules())
    masks = _current_masks(pruned)
    apply_masks(shuffle_masks({modules[name]: mask for name, mask in masks.items()}, generator))
    return fresh


def pruning_metrics(
    ctx: CellContext, args: PruningArgs, dense_params: int, final: nn.Module, **extra: Any
) -> dict[str, Any]:
    params = count_params(final)
    return {
        M.SPARSITY_TARGET: float(args.sparsity),
        M.PARAM_PRUNING_RATE: 1.0 - params[M.PARAMS_NONZERO] / dense_params,
        "variant": args.variant,
        M.DENSE_SECONDS: ctx.dense_seconds,
        **extra,
    }


def prune_and_train(
    ctx: CellContext,
    args: PruningArgs,
    granularity: str,
    model: nn.Module,
    prune: Callable[[nn.Module], None],
    epochs: int | None,
    desc: str,
    seconds_before: float = 0.0,
    **extra: Any,
) -> MethodResult:
    """The tail every protocol shares: prune `model` (timed), apply the sanity variant, train it for
    `epochs` (None: the cell's budget) with the zeros held, fold the masks in, and report."""
    dense = copy.deepcopy(model)
    dense_params = count_params(dense)["params"]
    start = time.perf_counter()
    prune(model)
    prune_seconds = time.perf_counter() - start
    model = apply_variant(ctx, args, granularity, dense, model)
    start = time.perf_counter()
    ctx.train(model, epochs=epochs, desc=desc)
    train_seconds = time.perf_counter() - start
    make_permanent(model)
    return MethodResult(
        model,
        pruning_metrics(
            ctx,
            args,
            dense_params,
            model,
            prune_seconds=prune_seconds,
            **{f"{desc}_seconds": train_seconds},
            total_train_seconds=seconds_before + prune_seconds + train_seconds,
            **extra,
        ),
    )


def post_training(
    ctx: CellContext, args: PruningArgs, granularity: str, prune: Callable[[nn.Module], None]
) -> MethodResult:
    """Han et al.'s protocol: the shared dense network, pruned once, then fine-tuned. Under the 'equal'
    budget the dense network is trained for what the fine-tuning leaves of train.epochs."""
    finetune = args.finetune(ctx.cfg.train.epochs)
    model = ctx.dense_start(ctx.first_phase_epochs(finetune))
    ctx.epochs_trained = 0  # the dense epochs are counted in dense_epochs
    return prune_and_train(
        ctx,
        args,
        granularity,
        model,
        prune,
        finetune,
        "finetune",
        seconds_before=ctx.dense_seconds,
    )


def at_initialisation(
    ctx: CellContext, args: PruningArgs, granularity: str, prune: Callable[[nn.Module], None]
) -> MethodResult:
    """Prune the freshly initialised network, then train it for the full budget (SNIP, SynFlow)."""
    return prune_and_train(ctx, args, granularity, ctx.model, prune, None, "sparse_train")


__all__ = [
    "VARIANTS",
    "KeepBest",
    "PruningArgs",
    "apply_masks",
    "apply_variant",
    "args_checker",
    "at_initialisation",
    "kept_per_group",
    "magnitude_masks",
    "make_permanent",
    "masks_from_scores",
    "positive_int",
    "post_training",
    "prunable_weights",
    "prune_and_train",
    "prune_structured",
    "pruning_metrics",
    "reinitialise",
    "shuffle_masks",
    "shuffled_structure",
    "unit_zero_bn_scales",
    "weights_to_remove",
]
