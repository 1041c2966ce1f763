"""Models: any timm architecture by name, sized for the dataset."""

from __future__ import annotations

import functools

import timm
import torch
import torch.nn as nn

from benchmark.core.config import ModelConfig
from benchmark.core.errors import UserError, unknown_choice

# The paper trains ResNets on 32x32 inputs with a CIFAR stem; at that size ImageNet's 7x7
# stride-2 stem plus max-pool would shrink the feature map 4x before the first block.
SMALL_INPUT_AUTO_MAX = 64


@functools.cache
def available_archs() -> tuple[str, ...]:
    return tuple(timm.list_models())


def check_arch(arch: str) -> None:
    if arch not in available_archs():
        raise unknown_choice("arch", arch, available_archs())


def supports_small_input(model: nn.Module) -> bool:
    """timm ResNet-family models with a single-conv stem followed by a max-pool."""
    return isinstance(getattr(model, "conv1", None), nn.Conv2d) and isinstance(
        getattr(model, "maxpool", None), (nn.MaxPool2d, nn.Identity)
    )


def apply_small_input_stem(model: nn.Module) -> nn.Module:
    """Replace the stem by a 3x3 stride-1 conv and drop the max-pool (the CIFAR ResNet stem)."""
    old: nn.Conv2d = model.conv1
    model.conv1 = nn.Conv2d(old.in_channels, old.out_channels, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    # timm records the stem's reduction for feature extraction; keep it truthful.
    for info in getattr(model, "feature_info", []):
        if isinstance(info, dict) and "reduction" in info:
            info["reduction"] = max(1, info["reduction"] // 4)
    return model


def resolve_small_input(cfg: ModelConfig, input_size: int, model: nn.Module) -> bool:
    """`cfg.small_input` checked against the arch, with None (auto) decided: on for ResNet stems <= 64 px."""
    supported = supports_small_input(model)
    if cfg.small_input and not supported:
        raise UserError(
            f"bad value for 'model.small_input': arch {cfg.arch!r} has no ResNet-style conv1 + maxpool stem; "
            "it is valid for the resnet family only (set it to false or null)"
        )
    if cfg.small_input is None:
        return input_size <= SMALL_INPUT_AUTO_MAX and supported
    return cfg.small_input


@functools.cache
def takes_img_size(arch: str) -> bool:
    """Whether timm builds `arch` for a given input size (`img_size`: ViT, DeiT, Mixer, Swin, ...). Asked on
    the meta device (no memory, no random numbers drawn), once per arch."""
    with torch.device("meta"):
        try:
            timm.create_model(arch, pretrained=False, num_classes=2, img_size=64)
        except TypeError:  # the arch's constructor has no img_size: it takes any size (CNNs)
            return False
        except Exception:  # noqa: BLE001 - it takes img_size but not 64 (e.g. a window size); still sized
            return True
    return True


def _size_kwargs(arch: str, input_size: int) -> dict:
    return {"img_size": input_size} if takes_img_size(arch) else {}


def probe(cfg: ModelConfig, in_chans: int, input_size: int) -> bool:
    """Check that `cfg.arch` exists and runs at `input_size`; return the resolved `small_input`.

    The model is built and run on the meta device: shapes only, no memory, a fraction of a second
    (remembered per arch and shape, so checking a study of hundreds of cells stays quick).
    """
    return _probe(cfg.arch, cfg.small_input, in_chans, input_size)


@functools.cache
def _probe(arch: str, small_input: bool | None, in_chans: int, input_size: int) -> bool:
    cfg = ModelConfig(arch=arch, small_input=small_input)
    check_arch(cfg.arch)
    with torch.device("meta"):
        model = timm.create_model(
            cfg.arch, pretrained=False, num_classes=2, in_chans=in_chans, **_size_kwargs(cfg.arch, input_size)
        )
        small = resolve_small_input(cfg, input_size, model)
        if small:
            apply_small_input_stem(model)
        model.eval()
        try:
            model(torch.zeros(2, in_chans, input_size, input_size))
        except (RuntimeError, ValueError, AssertionError) as exc:  # timm asserts fixed input sizes
            raise UserError(
                f"arch {cfg.arch!r} cannot take {input_size}x{input_size} inputs "
                f"({(str(exc).splitlines() or [type(exc).__name__])[0]}); choose an input size it supports, "
                f"e.g. --set data.input_size=32 (some archs need exactly their native size, such as 224)"
            ) from None
    return small


def create_model(cfg: ModelConfig, num_classes: int, in_chans: int, input_size: int) -> nn.Module:
    """A freshly initialised timm model (no pretrained weights: nothing is downloaded), built for `input_size`
    where the arch has a fixed input size."""
    check_arch(cfg.arch)
    model = timm.create_model(
        cfg.arch,
        pretrained=False,
        num_classes=num_classes,
        in_chans=in_chans,
        drop_rate=cfg.drop_rate,
        **_size_kwargs(cfg.arch, input_size),  # ViT/DeiT/Mixer: built for the study's input size
    )
    if resolve_small_input(cfg, input_size, model):
        apply_small_input_stem(model)
    return model
