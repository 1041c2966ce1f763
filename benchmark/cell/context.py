"""What a method gets: `CellContext`, the resolved config, the data, a fresh model and helpers.

Every baseline's function is `fn(ctx: CellContext) -> MethodResult`. The context also owns the
dense checkpoint store: post-training methods start from the same trained dense network.
"""

from __future__ import annotations

import copy
import hashlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from benchmark.cell.checkpoint import NotLoadable, load_network, save_network
from benchmark.cell.data import DatasetBundle
from benchmark.cell.device import model_device
from benchmark.cell.measure import evaluate
from benchmark.cell.training import Diverged, EpochStats, Hooks, ProgressStyle, make_loader, train
from benchmark.core.config import RunConfig, config_hash
from benchmark.core.errors import UserError
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
    dense_seconds_stored: float = 0.0
    dense_checkpoint: str | None = None  # digest of the dense network it started from (part of its identity)

    def train(
        self, model: nn.Module, epochs: int | None = None, hooks: list[Hooks] = (), desc: str = "train"
    ) -> list[EpochStats]:
        """Train with the cell's optimiser settings; epoch curves go to MLflow with a running step."""
        offset = self.epochs_trained

        def log(stats: EpochStats, extra: dict[str, float]) -> None:
            self.tracker.log_metrics({**stats.as_metrics(), **extra}, step=offset + stats.epoch)

        try:
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
        except Diverged as exc:  # counted over the whole cell, not this training phase
            raise Diverged(offset + exc.epoch, exc.what) from None
        self.epochs_trained += len(history)
        self.history.extend(history)
        return history

    def first_phase_epochs(self, later: int) -> int:
        """Epochs of training before pruning when `later` epochs follow it: train.epochs under the 'paper'
        budget; under 'equal', what is left of train.epochs (every method then trains train.epochs in all)."""
        epochs = self.cfg.train.epochs
        if self.cfg.train.budget == "paper":
            return epochs
        if later >= epochs:
            raise UserError(
                f"train.budget 'equal': train.epochs {epochs} cannot hold {later} epochs after pruning plus at "
                "least one before; lower method_args.finetune_epochs or raise train.epochs"
            )
        return epochs - later

    def dense_start(self, epochs: int | None = None) -> nn.Module:
        """The trained dense network of this cell's (arch, dataset, seed, training config).

        Shared between methods: read from the checkpoint store if any cell trained it before,
        else trained now (logged in this run) and stored. Its cost is `self.dense_seconds`.
        """
        epochs = epochs or self.cfg.train.epochs
        path = checkpoint_path(self.cfg, epochs)
        meta = path.with_suffix(".json")
        stored = _read_stored(path, meta)
        if stored is not None:
            record, model = stored
            self.dense_seconds = record["train_seconds"]
            self.dense_epochs = epochs
            self.dense_checkpoint = record.get("digest") or weights_digest(model)
            return model
        start = time.perf_counter()
        self.train(self.model, epochs=epochs, desc="dense")
        self.store_dense(self.model, time.perf_counter() - start, epochs)
        self.dense_seconds, self.dense_epochs = self.dense_seconds_stored, epochs
        return copy.deepcopy(self.model)

    def store_dense(self, model: nn.Module, seconds: float, epochs: int | None = None) -> None:
        """Put a dense network trained for `epochs` (default train.epochs) into the checkpoint store (atomically)."""
        epochs = epochs or self.cfg.train.epochs
        path = checkpoint_path(self.cfg, epochs)
        path.parent.mkdir(parents=True, exist_ok=True)
        bundle = self.bundle
        save_network(model, path, self.cfg.model, bundle.num_classes, bundle.in_chans, bundle.input_size)
        self.dense_checkpoint = weights_digest(model)
        record = {"train_seconds": seconds, "digest": self.dense_checkpoint, "config": self.cfg.to_dict()}
        write_json_atomic(path.with_suffix(".json"), record)
        self.dense_seconds_stored = seconds

    def example_inputs(self) -> torch.Tensor:
        """One input of the dataset's shape (for tracing dependency graphs)."""
        size = self.bundle.input_size
        return torch.zeros(1, self.bundle.in_chans, size, size, device=model_device(self.model))

    def evaluate(self, model: nn.Module, split: str = "test") -> dict[str, float]:
        dataset = {"test": self.bundle.test, "val": self.bundle.val}[split]
        loader = make_loader(
            dataset,
            self.cfg.train.eval_batch_size,
            shuffle=False,
            seed=0,
            num_workers=self.cfg.data.num_workers,
            pin_memory=model_device(model).type == "cuda",
        )
        return evaluate(model, loader, self.bundle.num_classes, self.cfg.train.precision, self.cfg.train.channels_last)


def _read_stored(path: Path, meta: Path) -> tuple[dict, nn.Module] | None:
    """The stored dense network and its record; None when there is none, or the file is not one this
    version wrote (an old whole-module pickle, a planted file): then it is trained again and replaced."""
    if not (path.is_file() and meta.is_file()):
        return None
    try:
        record = json.loads(meta.read_text())
        return record, load_network(path)
    except (OSError, ValueError, NotLoadable) as exc:
        print(f"dense checkpoint {path} not used, training it again: {exc}", file=sys.stderr)
        return None


def weights_digest(model: nn.Module) -> str:
    """A digest of a network's parameters and buffers (names, shapes and values): two checkpoints with
    the same digest hold the same network, however they were written."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def dense_checkpoint_digest(cfg: RunConfig, epochs: int | None = None) -> str | None:
    """The digest recorded for the stored dense checkpoint of `cfg` (None when none is stored)."""
    meta = checkpoint_path(cfg, epochs).with_suffix(".json")
    try:
        return json.loads(meta.read_text()).get("digest")
    except (OSError, ValueError):
        return None


def checkpoint_path(cfg: RunConfig, epochs: int | None = None) -> Path:
    """Where the dense network for `cfg`'s arch, dataset, seed and training settings, trained for `epochs`
    (default train.epochs), is stored. The budget protocol is not part of it: a dense network trained for
    4 epochs is the same network whichever protocol asked for it."""
    dense = copy.deepcopy(cfg)
    dense.method, dense.method_args = "dense", {}
    dense.train.epochs, dense.train.budget = epochs or cfg.train.epochs, "paper"
    return Path(checkpoints_root()) / f"dense-{config_hash(dense)}.pt"
