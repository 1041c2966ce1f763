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
import torch.nn.utils.prune as torch_prune
import torch_pruning as tp

from benchmark.errors import UserError
from benchmark.measure import count_params
from benchmark.methods import MethodResult
from edropout.units import classifier_of, find_units, shrink

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
        args = PruningArgs(**{k: v for k, v in method_args.items() if k in common},
                           extra={**extra_defaults, **{k: v for k, v in method_args.items() if k in extra_defaults}})
        if args.sparsity != "matched":
            if isinstance(args.sparsity, bool) or not isinstance(args.sparsity, (int, float)) \
                    or not 0.0 <= args.sparsity < 1.0:
                raise UserError(f"bad value for 'method_args.sparsity': must be a rate in [0, 1) or 'matched', "
                                f"got {args.sparsity!r}")
        if args.variant not in VARIANTS:
            raise UserError(f"bad value for 'method_args.variant': {args.variant!r}; valid: {', '.join(VARIANTS)}")
        if args.finetune_epochs is not None and (not isinstance(args.finetune_epochs, int) or args.finetune_epochs < 0):
            raise UserError(f"bad value for 'method_args.finetune_epochs': must be an integer >= 0, "
                            f"got {args.finetune_epochs!r}")
        if args.round_to is not None and (not isinstance(args.round_to, int) or args.round_to < 1):
            raise UserError(f"bad value for 'method_args.round_to': must be an integer >= 1, got {args.round_to!r}")
        return args

    return check


# -- structured pruning -------------------------------------------------------------------------------


def _prunable_layers(model: nn.Module) -> list[nn.Module]:
    head = classifier_of(model)
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and m is not head]


def prune_structured(
    model: nn.Module,
    example_inputs: torch.Tensor,
    importance: Callable,
    sparsity: float,
    global_pruning: bool,
    round_to: int | None = None,
    prepare: Callable[[nn.Module], None] | None = None,
    tolerance: float = 0.002,
) -> float:
    """Remove channel groups by `importance` until `sparsity` of the parameters is gone; returns the rate.

    torch-pruning's ratio is per channel; the parameter rate it gives is found by bisection on copies.
    `prepare(model)` runs before scoring (e.g. a backward pass for gradient-based importance).
    """
    if sparsity <= 0:
        return 0.0
    total = count_params(model)["params"]
    was_training = model.training

    import traceback
    import warnings
    from pathlib import Path

    arch = (getattr(model, "pretrained_cfg", None) or {}).get("architecture") or type(model).__name__
    tp_root, torch_root = Path(tp.__file__).resolve().parent, Path(torch.__file__).resolve().parent

    def apply(target: nn.Module, ratio: float, final: bool = False) -> float:
        target.eval()
        if prepare is not None:
            prepare(target)
        try:
            with warnings.catch_warnings():
                if not final:  # torch-pruning's warnings once (for the real model), not at every bisection step
                    warnings.simplefilter("ignore")
                pruner = tp.pruner.MetaPruner(
                    target, example_inputs, importance=importance, pruning_ratio=ratio,
                    global_pruning=global_pruning, max_pruning_ratio=0.95, ignored_layers=[classifier_of(target)],
                    round_to=round_to,
                )
                pruner.step()
        except Exception as exc:
            # torch-pruning cannot trace or index some architectures (e.g. res2net's split, dpn's
            # dual-path concat): a limit of the arch for structured methods, not a bug to show as a traceback.
            # Only when the failing code is torch-pruning's own (torch's frames aside): a bug in a
            # method's importance function keeps its traceback.
            files = [Path(f.filename).resolve() for f in traceback.extract_tb(exc.__traceback__)]
            files = [f for f in files if torch_root not in f.parents]
            if isinstance(exc, UserError) or not files or tp_root not in files[-1].parents:
                raise
            raise UserError(f"structured pruning cannot handle arch {arch!r}: torch-pruning failed with "
                            f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}; use an unstructured "
                            f"method or another arch") from None
        if final:  # the shrunk network must still run, or fine-tuning would fail with a shape error
            try:
                with torch.no_grad():
                    target(example_inputs)
            except (RuntimeError, ValueError, AssertionError, IndexError) as exc:
                raise UserError(f"structured pruning cannot handle arch {arch!r}: the pruned network no longer "
                                f"runs ({type(exc).__name__}: {' '.join(str(exc).split())[:300]}); use an "
                                f"unstructured method or another arch") from None
        target.train(was_training)
        return 1.0 - count_params(target)["params"] / total

    lo, hi, best = 0.0, 0.95, (math.inf, 0.0, 0.0)  # (distance, ratio, rate)
    for _ in range(16):
        mid = (lo + hi) / 2
        rate = apply(copy.deepcopy(model), mid)
        if abs(rate - sparsity) < best[0]:
            best = (abs(rate - sparsity), mid, rate)
        if abs(rate - sparsity) <= tolerance:
            break
        lo, hi = (mid, hi) if rate < sparsity else (lo, mid)
    # Rounding widths to a multiple makes the reachable rates coarser; allow for it.
    allowed = 0.01 if not round_to else 0.01 + 0.02 * min(round_to, 8) / 8
    if best[0] > allowed:
        raise UserError(f"structured pruning of {type(model).__name__} cannot reach a parameter pruning rate of "
                        f"{sparsity:.3f} (closest {best[2]:.3f}); choose another rate")
    return apply(model, best[1], final=True)


def kept_per_group(dense: nn.Module, pruned: nn.Module, example_inputs: torch.Tensor):
    """For each channel group of `dense`, how many channels `pruned` kept (by the root layer's width)."""
    units = find_units(dense, example_inputs, "group")
    widths = {name: m for name, m in pruned.named_modules()}
    counts = []
    for group in units.groups:
        name = next(n for n, m in dense.named_modules() if m is group.root)
        root = widths[name]
        counts.append(root.out_channels if isinstance(root, nn.Conv2d) else root.out_features)
    return units, counts


def shuffled_structure(dense: nn.Module, pruned: nn.Module, example_inputs: torch.Tensor,
                       generator: torch.Generator) -> nn.Module:
    """`dense` shrunk to the same width in every group as `pruned`, keeping random channels."""
    model = copy.deepcopy(dense)
    units, counts = kept_per_group(model, pruned, example_inputs)
    keep = torch.zeros(units.num_units, dtype=torch.bool)
    for offset, group, count in zip(units.offsets, units.groups, counts):
        keep[offset + torch.randperm(group.size, generator=generator)[:count]] = True
    return shrink(model, example_inputs, units, keep)


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


class KeepBest:
    """`importance` with the best `keep` of every channel group marked never to be removed.

    In global ranking torch-pruning skips a group whose channels all fall below the global
    threshold (it cannot remove them all), so exactly the least important layers would be kept
    whole. With the best 5% protected (prune_structured's max_pruning_ratio is 0.95), such a group
    is cut down to those channels instead, as the global criterion asks."""

    def __init__(self, importance, keep: float = 0.05):
        self.importance, self.keep = importance, keep

    def __call__(self, group):
        scores = self.importance(group)
        if scores is None:
            return None
        scores = scores.clone()
        scores[torch.topk(scores, max(1, math.ceil(self.keep * len(scores)))).indices] = math.inf
        return scores


def unit_zero_bn_scales(model: nn.Module) -> nn.Module:
    """Set BN scales that are entirely zero (timm's zero_init_last) to 1, in place.

    At initialisation such a scale makes every gradient inside the residual branch zero, which
    would leave gradient-based scores (SNIP, SynFlow) nothing to rank; the papers' networks start at 1.
    """
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.weight is not None \
                    and not torch.any(module.weight):
                module.weight.fill_(1.0)
    return model


def positive_int(args: PruningArgs, name: str) -> int:
    """A method-specific setting that must be an integer >= 1 (checked before anything runs)."""
    value = args.extra[name]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"bad value for 'method_args.{name}': must be an integer >= 1, got {value!r}")
    return value


# -- unstructured pruning -------------------------------------------------------------------------------


def prunable_weights(model: nn.Module) -> list[nn.Module]:
    """Every conv and linear layer, the classifier included (as in Deep Compression)."""
    return [m for m in model.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear))]


def weights_to_remove(model: nn.Module, sparsity: float) -> int:
    """How many weights must be zeroed for `sparsity` of *all* parameters (biases and BN included)."""
    total = count_params(model)["params"]
    available = sum(m.weight.numel() for m in prunable_weights(model))
    k = round(sparsity * total)
    if k > available:
        raise UserError(f"unstructured pruning cannot reach {sparsity:.3f} of all parameters: only "
                        f"{available / total:.3f} are conv/linear weights")
    return k


def masks_from_scores(scores: dict[nn.Module, torch.Tensor], k: int, scope: str) -> dict[nn.Module, torch.Tensor]:
    """Keep-masks that drop the `k` lowest scores, over all layers ('global') or evenly per layer ('layer')."""
    if scope == "global":
        flat = torch.cat([s.flatten() for s in scores.values()])
        drop = torch.zeros_like(flat, dtype=torch.bool)
        if k:
            drop[torch.topk(flat, k, largest=False).indices] = True
        out, at = {}, 0
        for module, s in scores.items():
            out[module] = ~drop[at:at + s.numel()].view_as(s)
            at += s.numel()
        return out
    fraction = k / sum(s.numel() for s in scores.values())
    out = {}
    for module, s in scores.items():
        n = round(fraction * s.numel())
        mask = torch.ones_like(s, dtype=torch.bool).flatten()
        if n:
            mask[torch.topk(s.flatten(), n, largest=False).indices] = False
        out[module] = mask.view_as(s)
    return out


def magnitude_masks(model: nn.Module, sparsity: float, scope: str) -> dict[nn.Module, torch.Tensor]:
    """Keep-masks dropping the smallest |w| for `sparsity` of all parameters, globally or per layer."""
    scores = {m: m.weight.detach().abs() for m in prunable_weights(model)}
    return masks_from_scores(scores, weights_to_remove(model, sparsity), scope)


def apply_masks(masks: dict[nn.Module, torch.Tensor]) -> None:
    """Install the masks with torch.nn.utils.prune: zeros stay zero through fine-tuning."""
    for module, mask in masks.items():
        torch_prune.custom_from_mask(module, "weight", mask)


def shuffle_masks(masks: dict[nn.Module, torch.Tensor], generator: torch.Generator) -> dict[nn.Module, torch.Tensor]:
    """The same number of kept weights in every layer, at random positions."""
    out = {}
    for module, mask in masks.items():
        flat = mask.flatten()
        out[module] = flat[torch.randperm(flat.numel(), generator=generator)].view_as(mask)
    return out


def make_permanent(model: nn.Module) -> nn.Module:
    """Fold the masks into the weights (zeros stay), removing torch.nn.utils.prune's hooks."""
    for module in model.modules():
        if torch_prune.is_pruned(module) and hasattr(module, "weight_orig"):
            torch_prune.remove(module, "weight")
    return model


# -- the protocols ----------------------------------------------------------------------------------


def _current_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: m.weight_mask.detach().clone() for name, m in model.named_modules() if hasattr(m, "weight_mask")}


def apply_variant(ctx, args: PruningArgs, granularity: str, dense: nn.Module, pruned: nn.Module) -> nn.Module:
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


def pruning_metrics(ctx, args: PruningArgs, dense_params: int, final: nn.Module, **extra: Any) -> dict[str, Any]:
    params = count_params(final)
    return {
        "sparsity_target": float(args.sparsity),
        "param_pruning_rate": 1.0 - params["params_nonzero"] / dense_params,
        "variant": args.variant,
        "dense_seconds": ctx.dense_seconds,
        "total_train_epochs": ctx.dense_epochs + ctx.epochs_trained,
        **extra,
    }


def prune_and_train(ctx, args: PruningArgs, granularity: str, model: nn.Module, prune: Callable[[nn.Module], None],
                    epochs: int | None, desc: str, seconds_before: float = 0.0, **extra: Any) -> MethodResult:
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
    return MethodResult(model, pruning_metrics(
        ctx, args, dense_params, model, prune_seconds=prune_seconds, **{f"{desc}_seconds": train_seconds},
        total_train_seconds=seconds_before + prune_seconds + train_seconds, **extra))


def post_training(ctx, args: PruningArgs, granularity: str, prune: Callable[[nn.Module], None]) -> MethodResult:
    """Han et al.'s protocol: the shared dense network, pruned once, then fine-tuned for the budget."""
    model = ctx.dense_start()
    ctx.epochs_trained = 0  # the dense epochs are counted in dense_epochs
    return prune_and_train(ctx, args, granularity, model, prune, args.finetune(ctx.cfg.train.epochs), "finetune",
                           seconds_before=ctx.dense_seconds)


def at_initialisation(ctx, args: PruningArgs, granularity: str, prune: Callable[[nn.Module], None]) -> MethodResult:
    """Prune the freshly initialised network, then train it for the full budget (SNIP, SynFlow)."""
    return prune_and_train(ctx, args, granularity, ctx.model, prune, None, "sparse_train")
