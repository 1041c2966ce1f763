"""What a method gets: `CellContext`, the resolved config, the data, a fresh model and helpers.

Every baseline's function is `fn(ctx: CellContext) -> MethodResult`. The context also owns the
dense checkpoint store: post-training methods start from the same trained dense network.
"""

from __future__ import annotations

import copy
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from benchmark.cell.data import DatasetBundle
from benchmark.cell.measure import evaluate
from benchmark.cell.training import EpochStats, Hooks, ProgressStyle, make_loader, train
from benchmark.core.config import RunConfig, config_hash
from benchmark.core.io import write_json_atomic
from benchmark.core.paths import checkpoints_root
from benchmark.core.tracking import CellTracker


@dataclass
class CellContext:
    """What a method gets: the resolved config, the data, a fresh model and a `train` helper."""

    cfg: RunConfig
    bundle: DatasetBundle
    model: nn.Module
    tracker: CellTracker
    progress: bool | ProgressStyle = True
    epochs_trained: int = 0
    history: list[EpochStats] = field(default_factory=list)
    dense_seconds: float = 0.0  # cost of the dense network a post-training method started from
    dense_epochs: int = 0

    def train(
        self, model: nn.Module, epochs: int | None = None, hooks: list[Hooks] = (), desc: str = "train"
    ) -> list[EpochStats]:
        """Train with the cell's optimiser settings; epoch curves go to MLflow with a running step."""
        offset = self.epochs_trained

        def log(stats: EpochStats, extra: dict[str, float]) -> None:
            self.tracker.log_metrics({**stats.as_metrics(), **extra}, step=offset + stats.epoch)

        history = train(
            model,
            self.bundle.train,
            self.bundle.val,
            self.cfg.train,
            self.cfg.seed + offset,
            self.bundle.num_classes,
            epochs=epochs,
            hooks=hooks,
            on_epoch=log,
            progress=self.progress,
            desc=desc,
            num_workers=self.cfg.data.num_workers,
        )
        self.epochs_trained += len(history)
        self.history.extend(history)
        return history

    def dense_start(self) -> nn.Module:
        """The trained dense network of this cell's (arch, dataset, seed, training config).

        Shared between methods: read from the checkpoint store if any cell trained it before,
        else trained now (logged in this run) and stored. Its cost is `self.dense_seconds`.
        """
        path = checkpoint_path(self.cfg)
        meta = path.with_suffix(".json")
        if path.is_file() and meta.is_file():
            self.dense_seconds = json.loads(meta.read_text())["train_seconds"]
            self.dense_epochs = self.cfg.train.epochs
            return torch.load(path, weights_only=False)
        start = time.perf_counter()
        self.train(self.model, desc="dense")
        self.store_dense(self.model, time.perf_counter() - start)
        return copy.deepcopy(self.model)

    def store_dense(self, model: nn.Module, seconds: float) -> None:
        """Put a trained dense network into the checkpoint store (atomically)."""
        path = checkpoint_path(self.cfg)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".pt.tmp")
        torch.save(model, tmp)
        os.replace(tmp, path)
        write_json_atomic(path.with_suffix(".json"), {"train_seconds": seconds, "config": self.cfg.to_dict()})
        self.dense_seconds, self.dense_epochs = seconds, self.cfg.train.epochs

    def example_inputs(self) -> torch.Tensor:
        """One input of the dataset's shape (for tracing dependency graphs)."""
        size = self.bundle.input_size
        return torch.zeros(1, self.bundle.in_chans, size, size)

    def evaluate(self, model: nn.Module, split: str = "test") -> dict[str, float]:
        dataset = {"test": self.bundle.test, "val": self.bundle.val}[split]
        loader = make_loader(
            dataset, self.cfg.train.eval_batch_size, shuffle=False, seed=0, num_workers=self.cfg.data.num_workers
        )
        return evaluate(model, loader, self.bundle.num_classes)


def checkpoint_path(cfg: RunConfig) -> Path:
    """Where the dense network for `cfg`'s arch, dataset, seed and training settings is stored."""
    dense = copy.deepcopy(cfg)
    dense.method, dense.method_args = "dense", {}
    return Path(checkpoints_root()) / f"dense-{config_hash(dense)}.pt"
