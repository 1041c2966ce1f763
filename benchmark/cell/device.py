"""Where a cell computes: `train.device`, `train.precision` and `train.channels_last` made concrete.

`auto` is CUDA when torch sees a CUDA device, else the CPU. A `cuda` device on a machine without one
is a one-line UserError (exit 2), never a traceback mid-training. On a CPU, `auto` and fp32 run
exactly the code that ran before these options existed, so CPU results are unchanged.
"""

from __future__ import annotations

import contextlib
import re

import torch
import torch.nn as nn

from benchmark.core.errors import UserError

DEVICE_CHOICES = "auto, cpu, cuda, cuda:N"
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str) -> torch.device:
    """`train.device` as a torch device: auto | cpu | cuda | cuda:N."""
    if name == "auto":
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    match = re.fullmatch(r"cuda(?::(\d+))?", str(name))
    if match is None:
        raise UserError(f"bad value for 'train.device': {name!r}; valid choices: {DEVICE_CHOICES}")
    if not torch.cuda.is_available():
        raise UserError(
            f"bad value for 'train.device': {name!r}, but torch sees no CUDA device on this machine; "
            "use 'auto' or 'cpu'"
        )
    index = int(match.group(1) or 0)
    if index >= torch.cuda.device_count():
        raise UserError(
            f"bad value for 'train.device': {name!r}, but this machine has {torch.cuda.device_count()} CUDA "
            f"device(s) (cuda:0..cuda:{torch.cuda.device_count() - 1})"
        )
    return torch.device("cuda", index)


def identity(name: str) -> str:
    """What `train.device` contributes to a cell's identity: 'auto' stays 'auto' where it means the CPU (so
    CPU results keep their config hash), and becomes 'cuda' where it means a GPU (another cell)."""
    return "cuda" if name == "auto" and resolve_device(name).type == "cuda" else name


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return platform.processor() or platform.machine() or "cpu"


def model_device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Mixed precision for the forward pass (bf16/fp16 autocast); fp32 is a no-op context."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=_DTYPES[precision])


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler | None:
    """fp16 on a GPU scales the loss against underflow; bf16 and the CPU need no scaler."""
    if precision == "fp16" and device.type == "cuda":
        return torch.amp.GradScaler("cuda")
    return None


def prepare_model(model: nn.Module, device: torch.device, channels_last: bool) -> nn.Module:
    """Move `model` (in place) to `device`, NHWC when `channels_last`; a no-op for a CPU fp32 model."""
    if model_device(model) != device:
        model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return model


def to_device(x: torch.Tensor, device: torch.device, channels_last: bool = False) -> torch.Tensor:
    if x.device != device:
        x = x.to(device, non_blocking=True)
    if channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x
