"""Measurement of a trained network: size, the paper's kept units, MACs, CPU (and GPU) latency, accuracy."""

from __future__ import annotations

import copy
import io
import math
import statistics
import time
from contextlib import contextmanager

import torch
import torch.nn as nn
import torch_pruning as tp
from timm.utils import accuracy
from torch.utils.data import DataLoader

from benchmark.core import metrics as M
from benchmark.core.config import MeasureConfig


def count_params(model: nn.Module) -> dict[str, int]:
    """Total parameters and parameters that are not exactly zero (what unstructured pruning leaves)."""
    params = list(model.parameters())
    return {
        M.PARAMS: sum(p.numel() for p in params),
        M.PARAMS_NONZERO: sum(int(torch.count_nonzero(p)) for p in params),
    }


def _classifier(model: nn.Module) -> nn.Module | None:
    """The output layer: timm's `get_classifier()` when it is a linear layer, else the last nn.Linear."""
    get = getattr(model, "get_classifier", None)
    head = get() if callable(get) else None
    if isinstance(head, nn.Linear):
        return head
    return next((m for m in reversed(list(model.modules())) if isinstance(m, nn.Linear)), None)


def _kept(weight: torch.Tensor, dim: int, count_zero: bool) -> int:
    """How many slices of `weight` along `dim` have a weight that is not zero (all of them with `count_zero`)."""
    if count_zero:
        return weight.shape[dim]
    other = [d for d in range(weight.dim()) if d != dim]
    return int(torch.count_nonzero(weight.detach().abs().amax(dim=other)))


def paper_r_units(model: nn.Module, count_zero: bool = False) -> int:
    """The paper's kept-unit count (the authors' `kept_counter`), the numerator of its R.

    Every conv layer counts its filters (output channels) that are not all zero times k^2 (the kernel's
    spatial size); the classifier counts its input features that are not all zero times its outputs
    (the classes); any other linear layer counts its output units that are not all zero, as a 1x1
    conv would. Input channels are ignored, as in the paper. Looking at zeros, not shapes, makes the
    count the same for a network that was physically shrunk and one whose units were masked to zero;
    unstructured sparsity rarely zeroes a whole unit, so such a network keeps nearly every unit.
    `count_zero` counts every unit present (the denominator, on the dense network).
    """
    classifier = _classifier(model)
    units = 0
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if not isinstance(weight, torch.Tensor):
            continue
        if isinstance(module, nn.modules.conv._ConvNd):
            units += _kept(weight, 0, count_zero) * int(math.prod(module.kernel_size))
        elif module is classifier:
            units += _kept(weight, 1, count_zero) * module.out_features
        elif isinstance(module, nn.Linear):
            units += _kept(weight, 0, count_zero)
    return units


def paper_r_percent(model: nn.Module, dense: nn.Module) -> float:
    """The paper's R in %: `model`'s kept units over those of the dense network of the same arch, all kept."""
    return 100.0 * paper_r_units(model) / paper_r_units(dense, count_zero=True)


def layer_macs(model: nn.Module, example: torch.Tensor) -> dict[nn.Module, int]:
    """MACs of every conv and linear layer in one forward pass of `example`, from their output shapes
    (a linear layer on (B, N, C) tokens counts all N tokens): what sparsity scales, for every family."""
    counts: dict[nn.Module, int] = {}

    def hook(module: nn.Module, _inputs, output) -> None:
        if isinstance(module, nn.Linear):
            per_output = module.in_features
        else:
            per_output = (module.in_channels // module.groups) * int(math.prod(module.kernel_size))
        counts[module] = counts.get(module, 0) + output.numel() * per_output

    layers = [m for m in model.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear))]
    handles = [m.register_forward_hook(hook) for m in layers]
    try:
        with torch.inference_mode():
            model(example)
    finally:
        for handle in handles:
            handle.remove()
    return counts


def count_macs(model: nn.Module, in_chans: int, input_size: int, nonzero: bool = False) -> int:
    """Multiply-accumulates of one forward pass at batch 1, counted by torch-pruning's op counter.

    torch-pruning leaves some layers' counts empty (None: the linear layers of ViT/DeiT/Mixer token
    blocks); their MACs come from `layer_macs` (output shape x fan-in), so every timm family is counted.
    With `nonzero`, each conv/linear layer's MACs are scaled by the fraction of its weights that are
    not zero: the theoretical cost of an unstructured sparse network (what sparse kernels could reach).
    """
    from benchmark.cell.device import model_device

    example = torch.zeros(1, in_chans, input_size, input_size, device=model_device(model))
    was_training = model.training
    model.eval()
    try:
        macs, _, per_layer, _ = tp.utils.count_ops_and_params(model, example, layer_wise=True)
        shapes = layer_macs(model, example) if nonzero or macs is None else {}
    finally:
        model.train(was_training)
    if macs is None:
        macs = sum(shapes.values())
    if not nonzero:
        return int(macs)
    for module, layer in per_layer.items():
        weight = getattr(module, "weight", None)
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)) and weight is not None:
            density = float(torch.count_nonzero(weight)) / weight.numel()
            macs -= (shapes.get(module, 0) if layer is None else layer) * (1.0 - density)
    return int(round(macs))


def serialized_bytes(model: nn.Module) -> int:
    """Size of the state dict as `torch.save` writes it."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


@contextmanager
def torch_threads(threads: int | None):
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


@torch.inference_mode()
def latency_ms(model: nn.Module, in_chans: int, input_size: int, batch_size: int, warmup: int, repeats: int) -> float:
    """Median wall time in milliseconds of one forward pass in eval mode, after `warmup` passes."""
    was_training = model.training
    model.eval()
    x = torch.randn(batch_size, in_chans, input_size, input_size)
    try:
        for _ in range(warmup):
            model(x)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)
    finally:
        model.train(was_training)
    return 1000.0 * statistics.median(times)


GPU_LATENCY = "gpu_latency_ms_b{}"  # metrics.json key of the GPU figure, beside the CPU latency


@torch.inference_mode()
def gpu_latency_ms(
    model: nn.Module, in_chans: int, input_size: int, batch_size: int, warmup: int, repeats: int
) -> float:
    """Median GPU time in milliseconds of one forward pass, timed with CUDA events after a synchronize
    (the model is on its CUDA device; the CPU figure `latency_ms` is measured separately, on the CPU)."""
    from benchmark.cell.device import model_device

    device = model_device(model)
    was_training = model.training
    model.eval()
    x = torch.randn(batch_size, in_chans, input_size, input_size, device=device)
    try:
        for _ in range(warmup):
            model(x)
        times = []
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize(device)
            start.record()
            model(x)
            end.record()
            torch.cuda.synchronize(device)
            times.append(start.elapsed_time(end))
    finally:
        model.train(was_training)
    return statistics.median(times)


def measure_model(model: nn.Module, in_chans: int, input_size: int, cfg: MeasureConfig) -> dict[str, float | int]:
    """Everything about the network itself that the report compares, in one flat dict."""
    out: dict[str, float | int] = {}
    out.update(count_params(model))
    out[M.PAPER_R_UNITS] = paper_r_units(model)
    out[M.MACS] = count_macs(model, in_chans, input_size)
    out[M.MACS_NONZERO] = count_macs(model, in_chans, input_size, nonzero=True)
    out[M.MODEL_BYTES] = serialized_bytes(model)
    from benchmark.cell.device import model_device

    device = model_device(model)
    if device.type == "cuda":
        for batch in cfg.latency_batch_sizes:
            out[GPU_LATENCY.format(batch)] = gpu_latency_ms(
                model, in_chans, input_size, batch, cfg.latency_warmup, cfg.latency_repeats
            )
    cpu_model = model if device.type == "cpu" else copy.deepcopy(model).cpu()  # CPU latency stays comparable
    with torch_threads(cfg.threads) as threads:
        out[M.LATENCY_THREADS] = threads
        for batch in cfg.latency_batch_sizes:
            out[M.latency_ms(batch)] = latency_ms(
                cpu_model, in_chans, input_size, batch, cfg.latency_warmup, cfg.latency_repeats
            )
    return out


@torch.inference_mode()
def evaluate(
    model: nn.Module, loader: DataLoader, num_classes: int, precision: str = "fp32", channels_last: bool = False
) -> dict[str, float]:
    """Top-1 / top-5 accuracy (percent) and mean cross-entropy, in eval mode, on the model's device."""
    from benchmark.cell.device import autocast, model_device, to_device

    device = model_device(model)
    was_training = model.training
    model.eval()
    k = min(5, num_classes)
    correct1 = correct5 = loss_sum = 0.0
    seen = 0
    try:
        for x, y in loader:
            x, y = to_device(x, device, channels_last), to_device(y, device)
            with autocast(device, precision):
                logits = model(x)
            logits = logits.float()
            loss_sum += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
            top1, top5 = accuracy(logits, y, topk=(1, k))
            correct1 += float(top1) * len(y) / 100.0
            correct5 += float(top5) * len(y) / 100.0
            seen += len(y)
    finally:
        model.train(was_training)
    if seen == 0:
        return {"top1": float("nan"), "top5": float("nan"), "loss": float("nan")}
    return {"top1": 100.0 * correct1 / seen, "top5": 100.0 * correct5 / seen, "loss": loss_sum / seen}
