"""Networks on disk as plain tensors and numbers: loading one never runs code from the file.

A pickled `nn.Module` (`torch.save(model)`) runs whatever the pickle names when it is loaded, so a
file planted in the checkpoint or results folder would run code. A network is saved instead as
its state dict, the model config it was built from, and the plain shape attributes of every module
(a structurally pruned network has fewer channels than a fresh one): `load_network` builds a fresh
model from the config, gives every module the saved tensors and attributes, and reads the file with
`torch.load(..., weights_only=True)`, which refuses anything but tensors and plain containers.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from benchmark.cell import models
from benchmark.core.config import ModelConfig

FORMAT = "pruning-benchmark-network/1"
_PLAIN = (bool, int, float, str, type(None))


class NotLoadable(Exception):
    """The file is not a network this module wrote (an old pickle, a tampered or foreign file)."""


def _plain(value: Any) -> bool:
    if isinstance(value, (tuple, list)):
        return all(_plain(v) for v in value)
    return type(value) in _PLAIN  # exactly: subclasses (timm's str-based Format enum) are not loadable safely


def _attributes(module: nn.Module) -> dict[str, Any]:
    """The module's plain public attributes (channel counts, kernel sizes, head counts...)."""
    return {k: v for k, v in vars(module).items() if not k.startswith("_") and _plain(v)}


def network_record(model: nn.Module, model_cfg: ModelConfig, num_classes: int, in_chans: int, input_size: int) -> dict:
    return {
        "format": FORMAT,
        "model": {k: getattr(model_cfg, k) for k in ModelConfig.__dataclass_fields__},
        "num_classes": num_classes,
        "in_chans": in_chans,
        "input_size": input_size,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "attributes": {name: _attributes(m) for name, m in model.named_modules()},
    }


def save_network(
    model: nn.Module, path: Path, model_cfg: ModelConfig, num_classes: int, in_chans: int, input_size: int
) -> None:
    """Write `model` to `path` atomically (a temporary file renamed into place)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        torch.save(network_record(model, model_cfg, num_classes, in_chans, input_size), tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load_network(path: Path) -> nn.Module:
    """The network saved at `path`; `NotLoadable` for anything `save_network` did not write."""
    try:
        record = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - an unsafe or broken pickle is refused, whatever the reason
        raise NotLoadable(f"{path} is not a network saved by this version ({type(exc).__name__})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise NotLoadable(f"{path} is not a network saved by this version (no {FORMAT!r} record)")
    try:
        cfg = ModelConfig(**record["model"])
        model = models.create_model(cfg, record["num_classes"], record["in_chans"], record["input_size"])
        modules = dict(model.named_modules())
        for name, attributes in record["attributes"].items():
            for key, value in attributes.items():
                setattr(modules[name], key, value)
        for key, tensor in record["state_dict"].items():
            owner, _, leaf = key.rpartition(".")
            module = modules[owner]
            if leaf in module._parameters:
                module._parameters[leaf] = nn.Parameter(tensor, requires_grad=module._parameters[leaf].requires_grad)
            elif leaf in module._buffers:
                module._buffers[leaf] = tensor
            else:
                raise KeyError(key)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise NotLoadable(f"{path} does not fit the model it names ({type(exc).__name__}: {exc})") from None
    return model.eval()
