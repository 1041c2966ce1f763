"""The full network (every unit on) rebuilt from a physically shrunk one.

After a shrink, the kept channels of every tensor live in the small network, and the full network
copied when the mask froze still holds the pruned ones. Several groups can own channels of one
tensor along the same dimension (a DenseNet's concatenated features: the stem's channels and each
dense layer's new ones all reach the next layers' BatchNorm and convolution), so the kept channels of
a (tensor, dim) are everything that no group removed, not the kept list of the last group seen.
"""

from __future__ import annotations

import torch
from torch import nn

from edropout.layout import UnitLayout


def kept_channels(
    units: UnitLayout, state: torch.Tensor, shapes: dict[str, torch.Size]
) -> dict[str, list[tuple[int, torch.Tensor]]]:
    """tensor name -> [(dim, indices kept along dim)], sorted by dim, for every tensor a group touches."""
    removed: dict[str, dict[int, torch.Tensor]] = {}
    for bits, group in zip(units.split(state.reshape(-1)), units.groups):
        off = (~bits).nonzero().flatten()
        for piece in group.slices:
            per_dim = removed.setdefault(piece.name, {})
            mask = per_dim.setdefault(piece.dim, torch.zeros(shapes[piece.name][piece.dim], dtype=torch.bool))
            mask[piece.index[off]] = True
    return {
        name: sorted((dim, (~mask).nonzero().flatten()) for dim, mask in dims.items()) for name, dims in removed.items()
    }


@torch.no_grad()
def write_back(full: nn.Module, small: nn.Module, units: UnitLayout, state: torch.Tensor) -> nn.Module:
    """Copy `small`'s tensors into the kept channels of `full` (in place) and return `full`."""
    tensors = list(full.named_parameters()) + list(full.named_buffers())
    kept = kept_channels(units, state, {name: t.shape for name, t in tensors})
    shrunk = dict(small.named_parameters()) | dict(small.named_buffers())
    for name, tensor in tensors:
        _write_back(tensor, shrunk[name], kept.get(name, []), name)
    return full


def _write_back(full: torch.Tensor, small: torch.Tensor, dims: list[tuple[int, torch.Tensor]], name: str) -> None:
    """full[kept indices along each pruned dim] = small."""
    if not dims:
        if full.shape != small.shape:
            raise RuntimeError(
                f"{name}: shape {tuple(small.shape)} after shrinking, {tuple(full.shape)} before, "
                "but no pruned channels were recorded for it"
            )
        full.copy_(small)
        return
    (dim, index), rest = dims[0], dims[1:]
    index = index.to(full.device)
    part = full.index_select(dim, index)
    _write_back(part, small, rest, name)
    full.index_copy_(dim, index, part)
