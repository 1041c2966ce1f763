"""One benchmark cell, end to end: config -> data -> model -> method -> measurement -> result.

Everything that can be wrong with the input is checked before the MLflow run is created and
before anything is written, so bad input leaves neither a metrics.json nor a run behind.
"""

from __future__ import annotations

import copy
import math
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch.nn as nn

from benchmark.cell import data as data_mod
from benchmark.cell import device as device_mod
from benchmark.cell import models
from benchmark.cell.checkpoint import save_network
from benchmark.cell.context import CellContext, dense_checkpoint_digest
from benchmark.cell.fingerprint import code_fingerprint
from benchmark.cell.measure import measure_model, torch_threads
from benchmark.cell.memory import check_fits, too_big
from benchmark.cell.plugins import get_method
from benchmark.cell.spec import TWIN_FROM, MethodResult, MethodSpec
from benchmark.cell.structured import refuse_unreachable
from benchmark.cell.training import Diverged, EpochStats, ProgressStyle, non_finite_parameter, seed_everything
from benchmark.core import metrics as M
from benchmark.core.config import NOT_HASHED, RunConfig, config_hash, flatten, same_config, validate
from benchmark.core.errors import UserError
from benchmark.core.integrity import result_problem
from benchmark.core.io import check_writable, read_json, write_json_atomic
from benchmark.core.paths import CONFIG_FILE, METRICS_FILE, MODEL_FILE, cell_folder, relative_to_root, results_root
from benchmark.core.provenance import git_commit, versions
from benchmark.core.study_runs import retire_superseded_runs
from benchmark.core.tracking import TrackingSettings, open_cell_tracker

__all__ = [
    "CellIdentity",
    "TrackingSettings",
    "identify",
    "is_done",
    "read_matched",
    "read_twin",
    "resolve",
    "run_cell",
]


def compare_with_dense(cfg: RunConfig, bundle: data_mod.DatasetBundle, measured: dict) -> dict[str, float]:
    """Speed and cost of the unpruned architecture, measured right after the pruned one in this process.

    Timing both side by side keeps the speedup meaningful on a noisy machine. `speedup_per_mac_reduction`
    near 1 means the saved MACs turn into saved time; well below 1, the pruned shapes suit the
    hardware poorly (try `method_args.round_to=8`).
    """
    reference = models.create_model(cfg.model, bundle.num_classes, bundle.in_chans, bundle.input_size)
    device_mod.prepare_model(reference, device_mod.resolve_device(cfg.train.device), cfg.train.channels_last)
    dense = measure_model(reference, bundle.in_chans, bundle.input_size, cfg.measure)
    batches = cfg.measure.latency_batch_sizes
    out = {M.DENSE_PARAMS: dense[M.PARAMS], M.DENSE_MACS: dense[M.MACS]}
    out.update({f"dense_{key}": value for key, value in dense.items() if key.startswith("gpu_latency")})
    out.update({M.dense_latency_ms(b): dense[M.latency_ms(b)] for b in batches})
    out[M.MAC_REDUCTION] = dense[M.MACS] / measured[M.MACS]
    out[M.THEORETICAL_MAC_REDUCTION] = dense[M.MACS] / max(1, measured[M.MACS_NONZERO])
    for b in batches:
        out[M.latency_speedup(b)] = dense[M.latency_ms(b)] / measured[M.latency_ms(b)]
        out[M.speedup_per_mac_reduction(b)] = out[M.latency_speedup(b)] / out[M.MAC_REDUCTION]
    return out


def device_record(cfg: RunConfig) -> dict[str, Any]:
    """Where the cell computed, for metrics.json and MLflow: device, its name, precision, memory format."""
    device = device_mod.resolve_device(cfg.train.device)
    return {
        "device": str(device),
        "device_name": device_mod.device_name(device),
        "precision": cfg.train.precision,
        "channels_last": cfg.train.channels_last,
    }


def resolve(cfg: RunConfig) -> tuple[RunConfig, MethodSpec]:
    """Check every name and value, and fill in the dataset-dependent defaults."""
    cfg = copy.deepcopy(cfg)
    validate(cfg)
    cfg.train.device = device_mod.identity(cfg.train.device)  # a missing CUDA device is a UserError here
    spec = data_mod.get_spec(cfg.data.name)
    method = get_method(cfg.method)
    if cfg.method_args.get("sparsity") == "matched":
        cfg.method_args["sparsity"], cfg.method_args["matched_from"] = read_matched(matched_folder(cfg), cfg)
    if any(key not in cfg.method_args for key in method.from_twin):
        given = cfg.method_args.get(TWIN_FROM)
        folder = _given_folder(given) if given else twin_folder(cfg, method)
        cfg.method_args.update(read_twin(folder, cfg, method))
    method.validate_args(cfg.method_args)
    models.check_arch(cfg.model.arch)
    if cfg.data.input_size is None:
        cfg.data.input_size = spec.native_size
    if cfg.data.augment is None:
        cfg.data.augment = spec.augment_default
    cfg.model.small_input = models.probe(cfg.model, spec.in_chans, cfg.data.input_size)
    return cfg, method


def edropout_twin(cfg: RunConfig, method_args: dict[str, Any] | None = None) -> RunConfig:
    """The EDropout cell of the same arch, dataset, seed and training config (whose rate `matched` uses)."""
    twin = copy.deepcopy(cfg)
    twin.method, twin.method_args = "edropout", dict(method_args or {})
    return twin


def matched_folder(cfg: RunConfig) -> Path:
    """Where `--sparsity matched` reads EDropout's rate: `method_args.matched_from` when given (a result
    folder), else the EDropout cell with default settings and this cell's config under the results root."""
    given = cfg.method_args.get("matched_from")
    if given:
        return _given_folder(given)
    twin = edropout_twin(cfg)
    return cell_folder(
        results_root(), "cells", cfg.data.name, cfg.model.arch, cfg.seed, "edropout", "own", config_hash(twin)
    )


def _given_folder(given: Any) -> Path:
    path = Path(str(given).split(" (")[0])
    return path if path.is_absolute() or path.exists() else results_root() / path


def twin_folder(cfg: RunConfig, method: MethodSpec) -> Path:
    """The EDropout cell whose values a `from_twin` method reads: the same settings as `cfg` (a control
    shares EDropout's method_args) under the results root."""
    args = {k: v for k, v in cfg.method_args.items() if k not in method.from_twin and k != TWIN_FROM}
    twin = edropout_twin(cfg, args)
    return cell_folder(
        results_root(), "cells", cfg.data.name, cfg.model.arch, cfg.seed, "edropout", "own", config_hash(twin)
    )


def read_twin(folder: Path, cfg: RunConfig, method: MethodSpec) -> dict[str, Any]:
    """The metrics `method.from_twin` names from the finished EDropout result in `folder`, and
    `twin_from`: where they came from (relative to the results root, with its config hash)."""
    path = Path(folder) / METRICS_FILE
    result = read_json(path) or {}
    missing = [key for key in method.from_twin if key not in result]
    if result.get("status") != "finished" or missing:
        what = f"has no {missing[0]!r}" if result and missing else "is not there"
        raise UserError(
            f"{method.name} needs the finished EDropout result for {cfg.model.arch}/{cfg.data.name}/seed "
            f"{cfg.seed} with the same settings; {path} {what}: run that cell first (the same command with "
            f"--method edropout --out {path.parent}), or name its folder with --set method_args.{TWIN_FROM}=FOLDER"
        )
    values = {key: result[key] for key in method.from_twin}
    values[TWIN_FROM] = f"{relative_to_root(Path(folder), results_root())} ({result.get('config_hash')})"
    return values


def edropout_command(cfg: RunConfig, out: Path) -> str:
    """The command that runs the EDropout cell a `matched` cell of `cfg` reads: the same arch, dataset, seed
    and every setting that differs from the defaults (method_args apart: EDropout's own defaults)."""
    defaults = flatten(RunConfig().to_dict())
    skip = {"method", "seed", "data.name", "model.arch", "train.device", *NOT_HASHED}
    sets = [
        f"--set {key}={value}"
        for key, value in flatten(cfg.to_dict()).items()
        if key not in skip and not key.startswith("method_args") and value is not None and value != defaults.get(key)
    ]
    return " ".join(
        [
            "python -m benchmark run --method edropout",
            f"--arch {cfg.model.arch} --dataset {cfg.data.name} --seed {cfg.seed}",
            *sets,
            f"--out {out}",
        ]
    )


def _matched_mismatch(stored: Any, cfg: RunConfig) -> str | None:
    """Why an EDropout result's recorded config is not this cell's twin (another method, arch, dataset, seed
    or training setting), or None. Fields `cfg` has not resolved yet (None), the device and method_args are not
    compared."""
    if not isinstance(stored, dict):
        return "records no config"
    then = {k: v for k, v in flatten(stored).items() if k not in NOT_HASHED and not k.startswith("method_args")}
    now = flatten(cfg.to_dict())
    if then.get("method") != "edropout":
        return f"is a {then.get('method')!r} result, not EDropout's"
    for key, value in then.items():
        if key not in ("method", "train.device") and now.get(key) is not None and now[key] != value:
            return f"was computed with {key}={value}, not {now[key]}"
    return None


def read_matched(folder: Path, cfg: RunConfig) -> tuple[float, str]:
    """EDropout's measured rate from its result in `folder`, and where it came from (relative to the
    results root, so results copied to another clone still match). The result must be EDropout's for the
    same arch, dataset, seed and settings as `cfg` (its method_args apart)."""
    path = Path(folder) / METRICS_FILE
    result = read_json(path)
    where = f"{cfg.model.arch}/{cfg.data.name}/seed {cfg.seed}"

    def fix() -> str:  # only when refusing: a study checks thousands of matched cells that are fine
        return (
            f"run that cell first ({edropout_command(cfg, path.parent)}), "
            "or name its folder with --set method_args.matched_from=FOLDER"
        )

    try:
        rate = float(result[M.PARAM_PRUNING_RATE])
        source = f"{relative_to_root(Path(folder), results_root())} ({result['config_hash']})"
    except (TypeError, ValueError, KeyError):
        raise UserError(f"--sparsity matched needs EDropout's result for {where} at {path}: {fix()}") from None
    problem = _matched_mismatch(result.get("config"), cfg)
    if problem:
        raise UserError(f"--sparsity matched needs EDropout's result for {where}; {path} {problem}: {fix()}")
    return rate, source


def _same_dense_start(metrics: dict, cfg: RunConfig) -> bool:
    """A cell that started from a stored dense network is done only while that store holds the same
    network (a different one, e.g. trained by other code, makes it a different cell)."""
    recorded = metrics.get("dense_checkpoint")
    stored = dense_checkpoint_digest(cfg, metrics.get("dense_epochs") or None) if recorded else None
    return stored is None or stored == recorded


@dataclass(frozen=True)
class CellIdentity:
    config: RunConfig
    method: MethodSpec
    config_hash: str
    code_hash: str


def identify(cfg: RunConfig) -> CellIdentity:
    """Resolve and check `cfg`, and compute what addresses its result (no data is loaded)."""
    cfg, method = resolve(cfg)
    dataset = data_mod.get_spec(cfg.data.name)
    return CellIdentity(cfg, method, config_hash(cfg), code_fingerprint(method, dataset))


def is_done(out_dir: str | Path, cell: CellIdentity) -> bool:
    """A finished result for exactly this config and code exists in `out_dir`."""
    metrics = read_json(Path(out_dir) / METRICS_FILE)
    return (
        metrics is not None
        and result_problem(metrics) is None  # a tampered or damaged result is recomputed
        and metrics.get("config_hash") == cell.config_hash
        and metrics.get("code_hash") == cell.code_hash
        and same_config(metrics.get("config"), cell.config)
        and _same_dense_start(metrics, cell.config)
    )


def _check_batchnorm(method: MethodSpec, model: nn.Module, arch: str) -> None:
    if method.needs_batchnorm and not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        raise UserError(
            f"method {method.name!r} needs BatchNorm layers, and arch {arch!r} has none; "
            f"choose an arch with BatchNorm (e.g. resnet18) or another method"
        )


CHANCE_FACTOR = 1.5  # top-1 at or below this multiple of chance counts as "at chance"


def status_notes(top1: float, num_classes: int, method_notes: list[str]) -> str:
    """What a reader must know before trusting the cell's numbers, '; '-joined ('' when nothing):
    a top-1 at chance, then the method's own notes (e.g. a search that never moved)."""
    notes = []
    chance = 100.0 / num_classes
    if not top1 > CHANCE_FACTOR * chance:  # NaN counts as at chance
        notes.append(
            f"top-1 {top1:.1f}% is at chance (1/{num_classes} = {chance:.1f}%; flagged at <= {CHANCE_FACTOR:g}x): "
            "the network learned nothing usable"
        )
    return "; ".join(notes + [str(n) for n in method_notes])


def _result(ctx: CellContext, cell: CellIdentity, result: MethodResult, seconds: float, tracker_id: str | None) -> dict:
    """Measure the method's final network and put together everything metrics.json records."""
    cfg, bundle, final = ctx.cfg, ctx.bundle, result.model
    bad = non_finite_parameter(final)
    if bad is not None:
        raise Diverged(ctx.epochs_trained, f"the final network's {bad} holds non-finite values")
    measured = measure_model(final, bundle.in_chans, bundle.input_size, cfg.measure)
    if not cell.method.is_reference:
        measured.update(compare_with_dense(cfg, bundle, measured))
    test = ctx.evaluate(final, "test")
    for key in ("top1", "top5", "loss") if len(bundle.test) else ():
        if not math.isfinite(test[key]):
            raise Diverged(ctx.epochs_trained, f"test {key} is {test[key]}")
    val = ctx.evaluate(final, "val") if len(bundle.val) else {"top1": float("nan")}
    method_metrics = dict(result.metrics)
    notes = status_notes(test["top1"], bundle.num_classes, method_metrics.pop(M.STATUS_NOTES, []))
    return {
        "method": cfg.method,
        "arch": cfg.model.arch,
        "dataset": cfg.data.name,
        "seed": cfg.seed,
        M.EPOCHS: ctx.epochs_trained,
        "status": "finished",
        M.TOP1: test["top1"],
        M.TOP5: test["top5"],
        M.TEST_LOSS: test["loss"],
        M.VAL_TOP1: val["top1"],
        **measured,
        M.TRAIN_SECONDS: seconds,
        **method_metrics,
        M.STATUS_NOTES: notes,
        M.TOTAL_TRAIN_EPOCHS: ctx.dense_epochs + ctx.epochs_trained,  # every epoch this result cost
        "budget": cfg.train.budget,
        **device_record(cfg),
        M.DENSE_EPOCHS: ctx.dense_epochs,
        "dense_checkpoint": ctx.dense_checkpoint,
        "split_sizes": bundle.sizes(),
        "split_hash": bundle.split.hash,
        "config": cfg.to_dict(),
        "config_hash": cell.config_hash,
        "code_hash": cell.code_hash,
        "versions": versions(),
        "git_commit": git_commit(),
        "mlflow_run_id": tracker_id,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def run_cell(
    cfg: RunConfig,
    out_dir: str | Path,
    tracking: TrackingSettings | None = None,
    progress: bool | ProgressStyle = True,
    save_model: bool = False,
) -> dict[str, Any]:
    """Run one cell and write `out_dir/metrics.json`; returns the metrics."""
    tracking = tracking or TrackingSettings()
    out_dir = Path(out_dir)
    cell = identify(cfg)
    cfg, method = cell.config, cell.method
    check_writable(out_dir)
    check_fits(cfg)  # an input batch beyond the machine's memory is refused before anything is built
    with torch_threads(cfg.train.threads):  # the same numbers however many cells run beside this one
        try:
            return _run(cfg, cell, method, out_dir, tracking, progress, save_model)
        except (MemoryError, RuntimeError) as exc:  # a failed allocation is one line naming the sizes
            error = too_big(exc, cfg)
            if error is None:
                raise
            raise error from None


def _run(cfg, cell, method, out_dir, tracking, progress, save_model) -> dict[str, Any]:
    seed_everything(cfg.seed)
    bundle = data_mod.build_dataset(cfg.data, cfg.seed)
    model = models.create_model(cfg.model, bundle.num_classes, bundle.in_chans, bundle.input_size)
    _check_batchnorm(method, model, cfg.model.arch)
    refuse_unreachable(method, model, cfg.method_args, bundle.in_chans, bundle.input_size)  # before training
    device_mod.prepare_model(model, device_mod.resolve_device(cfg.train.device), cfg.train.channels_last)

    tracker = open_cell_tracker(tracking, cell)  # named and tagged by every coordinate
    written = False
    try:
        tracker.log_params(cfg.to_dict())
        for key, value in device_record(cfg).items():
            tracker.set_tag(key, str(value))
        tracker.log_dataset(cfg.data.name, bundle.split.hash, bundle.sizes())
        ctx = CellContext(cfg, bundle, model, tracker, progress=progress)
        start = time.perf_counter()
        result: MethodResult = method.fn(ctx)
        metrics = _result(ctx, cell, result, time.perf_counter() - start, tracker.run_id)
        write_json_atomic(out_dir / CONFIG_FILE, cfg.to_dict())
        if save_model:
            b = ctx.bundle
            save_network(result.model, out_dir / MODEL_FILE, cfg.model, b.num_classes, b.in_chans, b.input_size)
        write_json_atomic(out_dir / METRICS_FILE, metrics)
        written = True
        # Per-epoch curves already carry val_top1 etc.; the final numbers go under their own names.
        curve_names = set(EpochStats.__dataclass_fields__)
        tracker.log_metrics(
            {k: v for k, v in metrics.items() if k not in curve_names and k != "seed"},
            step=ctx.epochs_trained,
            section="final",
        )
        if tracking.log_model:
            tracker.log_model(result.model, bundle.test)
        tracker.log_artifact(out_dir / METRICS_FILE)
        tracker.log_artifact(out_dir / CONFIG_FILE)
        tracker.finish("FINISHED")
    except BaseException as exc:
        if written:  # failed after the result was on disk: withdraw it, so results and MLflow agree
            (out_dir / METRICS_FILE).unlink(missing_ok=True)
        # The run stays in MLflow as FAILED with its error, so a study can report it.
        tracker.set_tag("error", f"{type(exc).__name__}: {exc}"[:5000])
        tracker.set_tag("traceback", traceback.format_exc()[-5000:])
        tracker.finish("KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
        raise
    retire_superseded_runs(tracking, cell.config_hash, tracker.run_id)  # a recomputed cell: one FINISHED run
    return metrics
