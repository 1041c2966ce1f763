"""The data a unit layout is made of: groups of channels, the tensors they own, the outputs they mask.

Kept apart from `edropout.units` (which finds them) so that modules adding kinds of units, such as
`edropout.heads`, build on it without importing the finder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class TensorSlice:
    """Channels `index` along `dim` of the tensor `name` (a parameter or buffer) belong to the group's bits."""

    name: str
    dim: int
    index: torch.Tensor  # index[j] is the channel switched by bit j


@dataclass
class MaskedOutput:
    """Output channels `index` (along `dim`) of `module` are multiplied by the group's bits."""

    module: nn.Module
    module_name: str
    dim: int
    index: torch.Tensor


@dataclass
class UnitGroup:
    name: str
    size: int
    outputs: list[MaskedOutput] = field(default_factory=list)
    slices: list[TensorSlice] = field(default_factory=list)
    root: nn.Module | None = None  # torch-pruning's root module and handler, for physical removal
    root_handler: object = None
    root_index: torch.Tensor | None = None
    remove: Callable[[torch.Tensor], None] | None = None  # removes units (indices) where torch-pruning cannot


@dataclass
class UnitLayout:
    groups: list[UnitGroup]
    layout: str
    skipped: dict[str, str] = field(default_factory=dict)  # group name -> why it is not prunable

    @property
    def num_units(self) -> int:
        return sum(g.size for g in self.groups)

    @property
    def offsets(self) -> list[int]:
        out, at = [], 0
        for g in self.groups:
            out.append(at)
            at += g.size
        return out

    def split(self, bits: torch.Tensor) -> list[torch.Tensor]:
        """Per-group views of a (..., num_units) tensor."""
        return list(bits.split([g.size for g in self.groups], dim=-1))
