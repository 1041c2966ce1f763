"""Unstructured pruning: weight masks over conv and linear layers, held through training with
torch.nn.utils.prune and folded into the weights at the end (Deep Compression's setting)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.utils.prune as torch_prune

from benchmark.cell.measure import count_params
from benchmark.core.errors import UserError


def prunable_weights(model: nn.Module) -> list[nn.Module]:
    """Every conv and linear layer, the classifier included (as in Deep Compression)."""
    return [m for m in model.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear))]


def weights_to_remove(model: nn.Module, sparsity: float) -> int:
    """How many weights must be zeroed for `sparsity` of *all* parameters (biases and BN included)."""
    total = count_params(model)["params"]
    available = sum(m.weight.numel() for m in prunable_weights(model))
    k = round(sparsity * total)
    if k > available:
        raise UserError(
            f"unstructured pruning cannot reach {sparsity:.3f} of all parameters: only "
            f"{available / total:.3f} are conv/linear weights"
        )
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
            out[module] = ~drop[at : at + s.numel()].view_as(s)
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
        torch_prune.custom_from_mask(module, "weight", mask.to(module.weight.device))


def shuffle_masks(masks: dict[nn.Module, torch.Tensor], generator: torch.Generator) -> dict[nn.Module, torch.Tensor]:
    """The same number of kept weights in every layer, at random positions."""
    out = {}
    for module, mask in masks.items():
        flat = mask.flatten()
        order = torch.randperm(flat.numel(), generator=generator).to(flat.device)  # a CPU generator: same draw anywhere
        out[module] = flat[order].view_as(mask)
    return out


def make_permanent(model: nn.Module) -> nn.Module:
    """Fold the masks into the weights (zeros stay), removing torch.nn.utils.prune's hooks."""
    for module in model.modules():
        if torch_prune.is_pruned(module) and hasattr(module, "weight_orig"):
            torch_prune.remove(module, "weight")
    return model
