"""Structured pruning: whole channel groups removed with torch-pruning, the network physically shrunk to
a target parameter pruning rate (found by bisection on torch-pruning's per-channel ratio)."""

from __future__ import annotations

import copy
import math
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn as nn
import torch_pruning as tp

from benchmark.cell.measure import count_params
from benchmark.core.errors import UserError
from edropout.deadline import ANALYSIS_SECONDS, AnalysisTimeout, time_limit
from edropout.heads import attention_modules
from edropout.units import classifier_of, find_units, shrink

MAX_CHANNEL_RATIO = 0.95  # torch-pruning's max_pruning_ratio: every group keeps at least 5% of its channels


def _prunable_layers(model: nn.Module) -> list[nn.Module]:
    head = classifier_of(model)
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and m is not head]


def ignored_layers(model: nn.Module) -> list[nn.Module]:
    """The layers whose output channels structured pruning leaves alone: the classifier, and the qkv
    and proj layers of every attention module (timm's ViT/DeiT).

    timm's Attention reshapes qkv's output by its fixed `num_heads` and `head_dim`, so its channels
    cannot go one by one, and proj writes into the embedding (residual) stream, which every block, the
    position embedding and the class token share. torch-pruning skips every group that would cut an
    ignored layer's outputs, so in a transformer block only the MLP's hidden units (fc1's outputs with
    fc2's inputs) are pruned; that removal is exact and the network keeps running."""
    ignored = [classifier_of(model)]
    for qkv, name in attention_modules(model).items():
        ignored += [qkv, model.get_submodule(name).proj]
    return [m for m in ignored if m is not None]


def _arch_name(model: nn.Module) -> str:
    return (getattr(model, "pretrained_cfg", None) or {}).get("architecture") or type(model).__name__


def _apply_ratio(
    target: nn.Module,
    example_inputs: torch.Tensor,
    importance: Callable,
    ratio: float,
    global_pruning: bool,
    round_to: int | None,
    prepare: Callable[[nn.Module], None] | None,
    final: bool,
) -> None:
    """One torch-pruning pass at channel `ratio` on `target`, in place; its failures as one-line UserErrors."""
    arch = _arch_name(target)
    target.eval()
    if prepare is not None:
        prepare(target)
    try:
        with warnings.catch_warnings(), time_limit(ANALYSIS_SECONDS):
            if not final:  # torch-pruning's warnings once (for the real model), not at every bisection step
                warnings.simplefilter("ignore")
            pruner = tp.pruner.MetaPruner(
                target,
                example_inputs,
                importance=importance,
                pruning_ratio=ratio,
                global_pruning=global_pruning,
                max_pruning_ratio=MAX_CHANNEL_RATIO,
                ignored_layers=ignored_layers(target),
                round_to=round_to,
            )
            pruner.step()
    except AnalysisTimeout as exc:  # its group search never ends on some attention blocks (CoAtNet, MaxViT)
        raise UserError(
            f"structured pruning cannot handle arch {arch!r}: {exc}; use an unstructured method or another arch"
        ) from None
    except Exception as exc:
        # torch-pruning cannot trace or index some architectures (e.g. res2net's split, dpn's
        # dual-path concat): a limit of the arch for structured methods, not a bug to show as a traceback.
        # Only when the failing code is torch-pruning's own (torch's frames aside): a bug in a
        # method's importance function keeps its traceback.
        tp_root, torch_root = Path(tp.__file__).resolve().parent, Path(torch.__file__).resolve().parent
        files = [Path(f.filename).resolve() for f in traceback.extract_tb(exc.__traceback__)]
        files = [f for f in files if torch_root not in f.parents]
        if isinstance(exc, UserError) or not files or tp_root not in files[-1].parents:
            raise
        raise UserError(
            f"structured pruning cannot handle arch {arch!r}: torch-pruning failed with "
            f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}; use an unstructured "
            f"method or another arch"
        ) from None
    if final:  # the shrunk network must still run, or fine-tuning would fail with a shape error
        try:
            with torch.no_grad():
                target(example_inputs)
        except (RuntimeError, ValueError, AssertionError, IndexError) as exc:
            raise UserError(
                f"structured pruning cannot handle arch {arch!r}: the pruned network no longer "
                f"runs ({type(exc).__name__}: {' '.join(str(exc).split())[:300]}); use an "
                f"unstructured method or another arch"
            ) from None


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

    def apply(target: nn.Module, ratio: float, final: bool = False) -> float:
        _apply_ratio(target, example_inputs, importance, ratio, global_pruning, round_to, prepare, final)
        target.train(was_training)
        return 1.0 - count_params(target)["params"] / total

    lo, hi, best = 0.0, MAX_CHANNEL_RATIO, (math.inf, 0.0, 0.0)  # (distance, ratio, rate)
    for _ in range(16):
        mid = (lo + hi) / 2
        rate = apply(copy.deepcopy(model), mid)
        if abs(rate - sparsity) < best[0]:
            best = (abs(rate - sparsity), mid, rate)
        if abs(rate - sparsity) <= tolerance:
            break
        lo, hi = (mid, hi) if rate < sparsity else (lo, mid)
    if best[0] > _allowed(round_to):
        raise UserError(
            f"structured pruning of {type(model).__name__} cannot reach a parameter pruning rate of "
            f"{sparsity:.3f} (closest {best[2]:.3f}); choose another rate"
        )
    return apply(model, best[1], final=True)


def reachable_rate(model: nn.Module, example_inputs: torch.Tensor, round_to: int | None = None) -> float:
    """The highest parameter pruning rate structured pruning can reach on `model`: every prunable group
    cut to its last 5% (on a copy). Raises the one-line UserError of `prune_structured` when
    torch-pruning cannot handle the arch or the pruned network no longer runs, so a cell can be
    refused before it trains."""
    total = count_params(model)["params"]
    target = copy.deepcopy(model)
    importance = tp.importance.MagnitudeImportance(p=1, normalizer=None, group_reduction="first")
    with warnings.catch_warnings():  # torch-pruning's warnings come once, from the real pruning
        warnings.simplefilter("ignore")
        _apply_ratio(target, example_inputs, importance, MAX_CHANNEL_RATIO, False, round_to, None, final=True)
    return 1.0 - count_params(target)["params"] / total


def check_reachable(model: nn.Module, example_inputs: torch.Tensor, sparsity: float, round_to: int | None) -> None:
    """Refuse, before any training, a target rate that structured pruning cannot reach on `model`."""
    if not isinstance(sparsity, (int, float)) or sparsity <= 0:
        return
    reachable = reachable_rate(model, example_inputs, round_to)
    if sparsity > reachable + _allowed(round_to):
        where = (
            " (its attention blocks' qkv/proj and embedding width are kept; only the MLP hidden units are pruned)"
            if attention_modules(model)
            else ""
        )
        raise UserError(
            f"structured pruning of arch {_arch_name(model)!r} can reach a parameter pruning rate of at most "
            f"{reachable:.3f}{where}, not {sparsity:.3f}; choose a rate <= {reachable:.3f} or an unstructured method"
        )


def refuse_unreachable(method, model: nn.Module, method_args: dict, in_chans: int, input_size: int) -> None:
    """Before training: a structured method with a target rate (`granularity` structured,
    `takes_sparsity`, a `MethodSpec`) is refused, in one line, on an arch torch-pruning cannot prune
    or at a rate it cannot reach there."""
    if method.granularity != "structured" or not method.takes_sparsity:
        return
    args = method.check_args(method_args)
    sparsity = getattr(args, "sparsity", method_args.get("sparsity"))
    round_to = getattr(args, "round_to", method_args.get("round_to"))
    example = torch.zeros(1, in_chans, input_size, input_size, device=next(model.parameters()).device)
    check_reachable(model, example, sparsity, round_to)


def _allowed(round_to: int | None) -> float:
    """How far the reached rate may be from the target (rounding widths makes the rates coarser)."""
    return 0.01 if not round_to else 0.01 + 0.02 * min(round_to, 8) / 8


def kept_per_group(dense: nn.Module, pruned: nn.Module, example_inputs: torch.Tensor):
    """For each unit group of `dense`, how many units `pruned` kept (the root layer's width; heads for
    the attention-head groups, which have no torch-pruning root)."""
    units = find_units(dense, example_inputs, "group")
    widths = {name: m for name, m in pruned.named_modules()}
    counts = []
    for group in units.groups:
        if group.root is None:  # a unit group of its own kind: the heads of an attention module
            counts.append(widths[group.name.removesuffix(".heads")].num_heads)
            continue
        name = next(n for n, m in dense.named_modules() if m is group.root)
        root = widths[name]
        counts.append(root.out_channels if isinstance(root, nn.Conv2d) else root.out_features)
    return units, counts


def shuffled_structure(
    dense: nn.Module, pruned: nn.Module, example_inputs: torch.Tensor, generator: torch.Generator
) -> nn.Module:
    """`dense` shrunk to the same width in every group as `pruned`, keeping random channels."""
    model = copy.deepcopy(dense)
    units, counts = kept_per_group(model, pruned, example_inputs)
    keep = torch.zeros(units.num_units, dtype=torch.bool)
    for offset, group, count in zip(units.offsets, units.groups, counts):
        keep[offset + torch.randperm(group.size, generator=generator)[:count]] = True
    return shrink(model, example_inputs, units, keep)


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
