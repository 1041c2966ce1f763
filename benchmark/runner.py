"""One benchmark cell, end to end: config -> data -> model -> method -> measurement -> result.

Everything that can be wrong with the input is checked before the MLflow run is created and
before anything is written, so bad input leaves neither a metrics.json nor a run behind.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import os
import platform
import subprocess
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import timm
import torch
import torch.nn as nn

import benchmark
from benchmark import data as data_mod
from benchmark import models
from benchmark.config import RunConfig, config_hash, flatten, validate
from benchmark.errors import UserError
from benchmark.measure import evaluate, measure_model
from benchmark.methods import MethodResult, MethodSpec, get_method
from benchmark.tracking import DEFAULT_EXPERIMENT, NullTracker, Tracker, default_tracking_uri
from benchmark.training import EpochStats, Hooks, make_loader, seed_everything, train

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class TrackingSettings:
    enabled: bool = True
    uri: str | None = None  # None: MLFLOW_TRACKING_URI or sqlite:///<project>/mlflow.db
    experiment: str = DEFAULT_EXPERIMENT
    parent_run_id: str | None = None


@dataclass
class CellContext:
    """What a method gets: the resolved config, the data, a fresh model and a `train` helper."""

    cfg: RunConfig
    bundle: data_mod.DatasetBundle
    model: nn.Module
    tracker: Any
    progress: bool = True
    epochs_trained: int = 0
    history: list[EpochStats] = field(default_factory=list)
    dense_seconds: float = 0.0  # cost of the dense network a post-training method started from
    dense_epochs: int = 0

    def train(self, model: nn.Module, epochs: int | None = None, hooks: list[Hooks] = (), desc: str = "train") -> list[EpochStats]:
        """Train with the cell's optimiser settings; epoch curves go to MLflow with a running step."""
        offset = self.epochs_trained

        def log(stats: EpochStats, extra: dict[str, float]) -> None:
            self.tracker.log_metrics({**stats.as_metrics(), **extra}, step=offset + stats.epoch)

        history = train(
            model, self.bundle.train, self.bundle.val, self.cfg.train, self.cfg.seed + offset,
            self.bundle.num_classes, epochs=epochs, hooks=hooks, on_epoch=log, progress=self.progress,
            desc=desc, num_workers=self.cfg.data.num_workers,
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
        loader = make_loader(dataset, self.cfg.train.eval_batch_size, shuffle=False, seed=0,
                             num_workers=self.cfg.data.num_workers)
        return evaluate(model, loader, self.bundle.num_classes)


def checkpoints_root() -> Path:
    return Path(os.environ.get("BENCHMARK_CHECKPOINTS", PROJECT_ROOT / "results" / "checkpoints"))


def results_root() -> Path:
    return Path(os.environ.get("BENCHMARK_RESULTS", PROJECT_ROOT / "results"))


def checkpoint_path(cfg: RunConfig) -> Path:
    """Where the dense network for `cfg`'s arch, dataset, seed and training settings is stored."""
    dense = copy.deepcopy(cfg)
    dense.method, dense.method_args = "dense", {}
    return checkpoints_root() / f"dense-{config_hash(dense)}.pt"


def versions() -> dict[str, str]:
    import torch_pruning

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "torch_pruning": getattr(torch_pruning, "__version__", "unknown"),
        "suite": benchmark.__version__,
    }


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def check_writable(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out_dir, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise UserError(f"output folder {str(out_dir)!r} is not writable ({exc.strerror or exc})") from None


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    """Write to a temporary file in the same folder, then rename: readers never see half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(payload, handle, indent=2, sort_keys=True, default=str)
            handle.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def compare_with_dense(cfg: RunConfig, bundle: data_mod.DatasetBundle, measured: dict) -> dict[str, float]:
    """Speed and cost of the unpruned architecture, measured right after the pruned one in this process.

    Timing both side by side keeps the speedup meaningful on a noisy machine. `speedup_per_mac_reduction`
    near 1 means the saved MACs turn into saved time; well below 1, the pruned shapes suit the
    hardware poorly (try `method_args.round_to=8`).
    """
    reference = models.create_model(cfg.model, bundle.num_classes, bundle.in_chans, bundle.input_size)
    dense = measure_model(reference, bundle.in_chans, bundle.input_size, cfg.measure)
    out = {f"dense_{k}": dense[k] for k in ("params", "macs") + tuple(f"latency_ms_b{b}" for b in cfg.measure.latency_batch_sizes)}
    out["mac_reduction"] = dense["macs"] / measured["macs"]
    out["theoretical_mac_reduction"] = dense["macs"] / max(1, measured["macs_nonzero"])
    for b in cfg.measure.latency_batch_sizes:
        out[f"latency_speedup_b{b}"] = dense[f"latency_ms_b{b}"] / measured[f"latency_ms_b{b}"]
        out[f"speedup_per_mac_reduction_b{b}"] = out[f"latency_speedup_b{b}"] / out["mac_reduction"]
    return out


def resolve(cfg: RunConfig) -> tuple[RunConfig, MethodSpec]:
    """Check every name and value, and fill in the dataset-dependent defaults."""
    cfg = copy.deepcopy(cfg)
    validate(cfg)
    spec = data_mod.get_spec(cfg.data.name)
    method = get_method(cfg.method)
    if cfg.method_args.get("sparsity") == "matched":
        cfg.method_args["sparsity"], cfg.method_args["matched_from"] = matched_sparsity(cfg)
    method.validate_args(cfg.method_args)
    models.check_arch(cfg.model.arch)
    if cfg.data.input_size is None:
        cfg.data.input_size = spec.native_size
    if cfg.data.augment is None:
        cfg.data.augment = spec.augment_default
    cfg.model.small_input = models.probe(cfg.model, spec.in_chans, cfg.data.input_size)
    return cfg, method


def matched_sparsity(cfg: RunConfig) -> tuple[float, str]:
    """The parameter pruning rate EDropout reached for the same arch, dataset and seed (the paper's protocol)."""
    from benchmark.study import cell_dir

    return read_matched(cell_dir(results_root(), "cells", cfg.data.name, cfg.model.arch, cfg.seed) / "edropout", cfg)


def read_matched(folder: Path, cfg: RunConfig) -> tuple[float, str]:
    """EDropout's measured rate from its result in `folder`, and where it came from."""
    path = Path(folder) / "metrics.json"
    try:
        result = json.loads(path.read_text())
        return float(result["param_pruning_rate"]), f"{path} ({result['config_hash']})"
    except (OSError, ValueError, KeyError):
        raise UserError(f"--sparsity matched needs EDropout's result for {cfg.model.arch}/{cfg.data.name}/seed "
                        f"{cfg.seed} at {path}: run that cell first (python -m benchmark run --method edropout "
                        f"--out {path.parent})") from None


# Harness modules that schedule, collect or present cells but cannot change a cell's result:
# editing them must not invalidate finished cells.
NOT_CELL_CODE = {"__main__.py", "cli.py", "compare.py", "speed.py", "scaling.py", "study.py", "execution.py",
                 "aggregate.py", "report.py", "stats.py", "figures.py", "claims.py"}


def code_fingerprint(method: MethodSpec) -> str:
    """Hash of the harness, the EDropout library and the method's own file.

    A cached cell counts as done only if both its config and the code that produced it are unchanged.
    """
    return _fingerprint(method.source)


@functools.lru_cache(maxsize=None)
def _fingerprint(source: str) -> str:
    h = hashlib.sha256()
    harness = [p for p in sorted((PROJECT_ROOT / "benchmark").rglob("*.py")) if p.name not in NOT_CELL_CODE]
    files = harness + sorted((PROJECT_ROOT / "edropout").rglob("*.py"))
    if Path(source).is_file():
        files.append(Path(source))
    for path in files:
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class CellIdentity:
    config: RunConfig
    method: MethodSpec
    config_hash: str
    code_hash: str


def identify(cfg: RunConfig) -> CellIdentity:
    """Resolve and check `cfg`, and compute what addresses its result (no data is loaded)."""
    cfg, method = resolve(cfg)
    return CellIdentity(cfg, method, config_hash(cfg), code_fingerprint(method))


def is_done(out_dir: str | Path, cell: CellIdentity) -> bool:
    """A finished result for exactly this config and code exists in `out_dir`."""
    try:
        metrics = json.loads((Path(out_dir) / "metrics.json").read_text())
    except (OSError, ValueError):
        return False
    return (metrics.get("status") == "finished" and metrics.get("config_hash") == cell.config_hash
            and metrics.get("code_hash") == cell.code_hash)


def run_cell(
    cfg: RunConfig,
    out_dir: str | Path,
    tracking: TrackingSettings | None = None,
    progress: bool = True,
    save_model: bool = False,
) -> dict[str, Any]:
    """Run one cell and write `out_dir/metrics.json`; returns the metrics."""
    tracking = tracking or TrackingSettings()
    out_dir = Path(out_dir)
    cell = identify(cfg)
    cfg, method, digest = cell.config, cell.method, cell.config_hash
    check_writable(out_dir)
    seed_everything(cfg.seed)
    bundle = data_mod.build_dataset(cfg.data, cfg.seed)
    model = models.create_model(cfg.model, bundle.num_classes, bundle.in_chans, bundle.input_size)

    tags = {"method": cfg.method, "arch": cfg.model.arch, "dataset": cfg.data.name, "seed": str(cfg.seed),
            "config_hash": digest}
    if tracking.enabled:
        tracker: Any = Tracker(tracking.uri or default_tracking_uri(), tracking.experiment,
                               f"{cfg.method}-{cfg.model.arch}-{cfg.data.name}-s{cfg.seed}", tags,
                               tracking.parent_run_id)
    else:
        tracker = NullTracker()
    try:
        tracker.log_params(flatten(cfg.to_dict()))
        ctx = CellContext(cfg, bundle, model, tracker, progress=progress)
        start = time.perf_counter()
        result: MethodResult = method.fn(ctx)
        train_seconds = time.perf_counter() - start
        final = result.model
        measured = measure_model(final, bundle.in_chans, bundle.input_size, cfg.measure)
        if cfg.method != "dense":
            measured.update(compare_with_dense(cfg, bundle, measured))
        test = ctx.evaluate(final, "test")
        val = ctx.evaluate(final, "val") if len(bundle.val) else {"top1": float("nan")}
        metrics: dict[str, Any] = {
            "method": cfg.method, "arch": cfg.model.arch, "dataset": cfg.data.name, "seed": cfg.seed,
            "epochs": ctx.epochs_trained, "status": "finished",
            "top1": test["top1"], "top5": test["top5"], "test_loss": test["loss"], "val_top1": val["top1"],
            **measured,
            "train_seconds": train_seconds,
            **result.metrics,
            "split_sizes": bundle.sizes(), "split_hash": bundle.split.hash,
            "config": cfg.to_dict(), "config_hash": digest, "code_hash": cell.code_hash,
            "versions": versions(), "git_commit": git_commit(),
            "mlflow_run_id": tracker.run_id,
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        write_json_atomic(out_dir / "config.json", cfg.to_dict())
        if save_model:
            torch.save(final, out_dir / "model.pt")
        write_json_atomic(out_dir / "metrics.json", metrics)
        # Per-epoch curves already carry val_top1 etc.; the final numbers go under their own names.
        curve_names = set(EpochStats.__dataclass_fields__)
        tracker.log_metrics({k: v for k, v in metrics.items() if k not in curve_names and k != "seed"},
                            step=ctx.epochs_trained)
        tracker.log_artifact(out_dir / "metrics.json")
        tracker.log_artifact(out_dir / "config.json")
        tracker.finish("FINISHED")
        return metrics
    except BaseException as exc:
        # The run stays in MLflow as FAILED with its error, so a study can report it.
        tracker.set_tag("error", f"{type(exc).__name__}: {exc}"[:5000])
        tracker.set_tag("traceback", traceback.format_exc()[-5000:])
        tracker.finish("KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
        raise
