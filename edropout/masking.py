"""Applying pruning states to a network with forward hooks, for one state or many at once.

With S states, the input batch is replicated S times along the batch dimension; each hook views
its output as (S, B, ...) and multiplies state s's copy by state s's channel mask, so one forward
pass measures all S states (instead of S masked copies of the network, one after another).
"""

from __future__ import annotations

from collections import defaultdict

import torch
from torch import nn

from edropout.layout import UnitLayout


class Masker:
    """Holds the active states and multiplies the masked modules' outputs by them."""

    def __init__(self, units: UnitLayout):
        self.units = units
        # module -> [(group number, output dim, channel index)]
        self._targets: dict[nn.Module, list[tuple[int, int, torch.Tensor]]] = defaultdict(list)
        for g, group in enumerate(units.groups):
            for out in group.outputs:
                self._targets[out.module].append((g, out.dim, out.index))
        self._masks: dict[nn.Module, tuple[torch.Tensor, int]] = {}
        self._states = 1
        self._handles = []

    def attach(self) -> Masker:
        if not self._handles:
            self._handles = [m.register_forward_hook(self._hook) for m in self._targets]
        return self

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._masks = {}

    @property
    def attached(self) -> bool:
        return bool(self._handles)

    def set_states(self, states: torch.Tensor) -> None:
        """Activate (S, num_units) bool states; the next forward must carry S copies of the batch."""
        states = states.reshape(-1, self.units.num_units)
        per_group = self.units.split(states)
        self._states = states.shape[0]
        self._masks = {}
        for module, targets in self._targets.items():
            dim = targets[0][1]
            channels = self._channel_count(module, dim)
            mask = None
            for g, _, index in targets:
                bits = per_group[g]
                if mask is None and len(index) == channels and torch.equal(index, torch.arange(channels)):
                    mask = bits.float()
                    continue
                if mask is None:
                    mask = torch.ones(self._states, channels)
                mask = mask.clone()
                mask[:, index] = mask[:, index] * bits.float()
            self._masks[module] = (mask.to(_device_of(module)), dim)  # the bits stay on the CPU

    @staticmethod
    def _channel_count(module: nn.Module, dim: int) -> int:
        for attr in ("out_channels", "out_features", "num_features"):
            if hasattr(module, attr):
                return int(getattr(module, attr))
        raise TypeError(f"cannot tell the channel count of {type(module).__name__}")

    def _hook(self, module: nn.Module, inputs, output: torch.Tensor) -> torch.Tensor:
        if module not in self._masks:
            return output
        mask, dim = self._masks[module]
        states = self._states
        if mask.device != output.device or mask.dtype != output.dtype:
            mask = mask.to(device=output.device, dtype=output.dtype)
            self._masks[module] = (mask, dim)
        dim = dim % output.dim()
        shape = [1] * output.dim()
        shape[dim] = mask.shape[1]
        if states == 1:
            return output * mask.view(shape)
        grouped = output.view(states, output.shape[0] // states, *output.shape[1:])
        return (grouped * mask.view(states, *shape)).view(output.shape)


def _device_of(module: nn.Module) -> torch.device:
    """Where `module` computes (its first parameter or buffer; the CPU for a module without either)."""
    tensor = next(module.parameters(), None)
    if tensor is None:
        tensor = next(module.buffers(), None)
    return tensor.device if tensor is not None else torch.device("cpu")
