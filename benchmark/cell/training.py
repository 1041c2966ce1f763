"""Training: one loop for every method, with hooks where pruning methods act."""

from __future__ import annotations

import math
import random
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from benchmark.cell.device import autocast, grad_scaler, prepare_model, resolve_device, to_device
from benchmark.cell.measure import evaluate
from benchmark.core.config import TrainConfig
from benchmark.core.errors import CellFailed


class Diverged(CellFailed):
    """Training produced a non-finite loss or weights: the cell fails; its numbers would be noise."""

    def __init__(self, epoch: int, what: str):
        super().__init__(f"diverged at epoch {epoch}: {what}")
        self.epoch, self.what = epoch, what


def non_finite_parameter(model: nn.Module) -> str | None:
    """The name of the first parameter or buffer holding NaN or infinity (None when all are finite)."""
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            return name
    return None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass(frozen=True)
class ProgressStyle:
    """How training shows progress. Study workers share one terminal: no per-batch bars there, and
    every per-epoch line starts with its cell's name (`prefix`)."""

    lines: bool = True  # one line per epoch
    bars: bool = True  # a per-batch bar (only on a terminal)
    prefix: str = ""

    @classmethod
    def of(cls, progress: bool | ProgressStyle) -> ProgressStyle:
        return progress if isinstance(progress, ProgressStyle) else cls(lines=progress, bars=progress)


class Hooks:
    """Where a pruning method acts on training. Override what you need; every method is a no-op."""

    def before_step(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
        """Before the forward pass of a training step (e.g. apply a mask, run a search)."""

    def after_backward(self, model: nn.Module) -> None:
        """After `loss.backward()`, before the optimiser step (e.g. zero pruned gradients, add a penalty)."""

    def after_step(self, model: nn.Module) -> None:
        """After the optimiser step (e.g. re-apply a mask)."""

    def bind_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """The optimiser the loop steps, each time it is (re)built (e.g. to freeze pruned units' state)."""

    def end_epoch(self, model: nn.Module, epoch: int) -> dict[str, float]:
        """After each epoch; returned values are logged with the epoch's metrics."""
        return {}

    def network_changed(self) -> bool:
        """True right after `end_epoch` replaced parameters (e.g. a physical shrink): the loop then
        builds a new optimiser and continues the learning-rate schedule where it was."""
        return False


@dataclass
class EpochStats:
    epoch: int
    loss: float
    train_top1: float
    val_top1: float
    val_loss: float
    lr: float
    seconds: float

    def as_metrics(self) -> dict[str, float]:
        return {k: v for k, v in asdict(self).items() if k != "epoch"}


def make_loader(
    dataset: Dataset, batch_size: int, shuffle: bool, seed: int, num_workers: int = 0, pin_memory: bool = False
) -> DataLoader:
    """`pin_memory` (page-locked batches) when a GPU reads them; workers keep their own order-free RNG."""
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0,
    )


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adadelta":
        return torch.optim.Adadelta(params, lr=cfg.lr, rho=cfg.rho, eps=cfg.eps, weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}")  # config.validate rejects it first


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, epochs: int):
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    if cfg.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.step_size, gamma=cfg.gamma)
    return None


def train(
    model: nn.Module,
    train_set: Dataset,
    val_set: Dataset,
    cfg: TrainConfig,
    seed: int,
    num_classes: int,
    epochs: int | None = None,
    hooks: Sequence[Hooks] = (),
    on_epoch: Callable[[EpochStats, dict[str, float]], None] | None = None,
    progress: bool | ProgressStyle = True,
    desc: str = "train",
    num_workers: int = 0,
) -> list[EpochStats]:
    """Train `model` in place with cross-entropy; returns one record per epoch.

    `epochs` overrides `cfg.epochs` (fine-tuning budgets); the schedule spans the epochs run here.
    """
    epochs = cfg.epochs if epochs is None else epochs
    style = ProgressStyle.of(progress)
    device = resolve_device(cfg.device)
    prepare_model(model, device, cfg.channels_last)
    pin = device.type == "cuda"
    loader = make_loader(train_set, cfg.batch_size, shuffle=True, seed=seed, num_workers=num_workers, pin_memory=pin)
    val_loader = make_loader(
        val_set, cfg.eval_batch_size, shuffle=False, seed=seed, num_workers=num_workers, pin_memory=pin
    )
    scaler = grad_scaler(device, cfg.precision)
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg, epochs)
    for hook in hooks:
        hook.bind_optimizer(optimizer)
    history: list[EpochStats] = []
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        model.train()
        loss_sum = correct = seen = 0.0
        bar = tqdm(
            loader, desc=f"{desc} {epoch}/{epochs}", leave=False, disable=None if style.bars else True, file=sys.stderr
        )  # None: no bar when not a TTY
        for x, y in bar:
            x, y = to_device(x, device, cfg.channels_last), to_device(y, device)
            loss, logits = _step(model, x, y, hooks, optimizer, scaler, device, cfg.precision)
            if not math.isfinite(loss):
                raise Diverged(epoch, f"training loss is {loss}")
            loss_sum += loss * len(y)
            correct += float((logits.argmax(1) == y).sum())
            seen += len(y)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}")
        lr = optimizer.param_groups[0]["lr"]
        if scheduler is not None:
            scheduler.step()
        val = (
            evaluate(model, val_loader, num_classes, cfg.precision, cfg.channels_last)
            if len(val_set)
            else {"top1": float("nan"), "loss": float("nan")}
        )
        extra: dict[str, float] = {}
        for hook in hooks:
            extra.update(hook.end_epoch(model, epoch))
        if any(hook.network_changed() for hook in hooks):
            optimizer, scheduler = _fresh_optimizer(model, cfg, epochs, epoch, hooks)
        stats = EpochStats(
            epoch, loss_sum / seen, 100.0 * correct / seen, val["top1"], val["loss"], lr, time.perf_counter() - start
        )
        history.append(stats)
        bad = non_finite_parameter(model)
        if bad is not None:
            raise Diverged(epoch, f"{bad} holds non-finite values")
        if style.lines:
            print(
                f"{style.prefix}{desc} epoch {epoch}/{epochs}: loss {stats.loss:.4f} train {stats.train_top1:.2f}% "
                f"val {stats.val_top1:.2f}% ({stats.seconds:.1f}s)",
                file=sys.stderr,
            )
        if on_epoch is not None:
            on_epoch(stats, extra)
    return history


def _step(model, x, y, hooks, optimizer, scaler, device, precision) -> tuple[float, torch.Tensor]:
    """One optimisation step with the hooks around it; returns the batch loss and the logits."""
    for hook in hooks:
        hook.before_step(model, x, y)
    with autocast(device, precision):
        logits = model(x)
        loss = nn.functional.cross_entropy(logits, y)
    optimizer.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
    else:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)  # hooks see true gradients
    for hook in hooks:
        hook.after_backward(model)
    if scaler is None:
        optimizer.step()
    else:
        scaler.step(optimizer)
        scaler.update()
    for hook in hooks:
        hook.after_step(model)
    return loss.item(), logits


def _fresh_optimizer(model, cfg: TrainConfig, epochs: int, epoch: int, hooks: Sequence[Hooks]):
    """A new optimizer and schedule for a network whose parameters changed (shrunk), at `epoch`."""
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg, epochs)
    for hook in hooks:
        hook.bind_optimizer(optimizer)
    with warnings.catch_warnings():  # stepping a fresh scheduler to the current epoch
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(epoch if scheduler is not None else 0):
            scheduler.step()
    return optimizer, scheduler
