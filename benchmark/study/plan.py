"""What a profile costs before it runs: its cells, the datasets to pull, and an estimated wall time.

`python -m benchmark plan [PROFILE]` prints them; the `data` stage (the first stage of a study) asks
for confirmation when the estimate is above a threshold (`confirm_cost`).

The estimate is calibrated on this machine's device, not looked up: for each arch and dataset shape
of the profile the harness's own training loop runs a few batches of random images at the profile's
input size, batch size, precision and threads on the profile's device, then an evaluation batch and
the latency measurement are timed (the fastest of a few repeats; on the CPU in CPU time, so a busy
machine inflates it less). A cell's cost is its training epochs (from its method's schedule: the full
budget, or fine-tuning on a dense network shared by the post-training cells of its arch/dataset/seed)
x steps per epoch x step time, x `SEARCH_OVERHEAD` for EDropout's search, plus its evaluation,
latency measurement and a fixed per-cell cost (process, MLflow run, files), over the cells that run
at a time. The cells come from `study.cells`, expanded as the stages expand them.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch

from benchmark.cell.data import get_spec
from benchmark.cell.device import resolve_device
from benchmark.cell.plugins import get_method
from benchmark.core.config import RunConfig
from benchmark.core.errors import UserError
from benchmark.study.backends import cpu_cores, plan_workers
from benchmark.study.cells import Cell, dense_cells, method_cells
from benchmark.study.latency import Protocol
from benchmark.study.profiles import EDROPOUT, Profile

# Images per dataset: (training set, official test set or None when the harness splits one off).
IMAGES: dict[str, tuple[int, int | None]] = {
    "digits": (1797, None),
    "mnist": (60000, 10000),
    "fashion_mnist": (60000, 10000),
    "kmnist": (60000, 10000),
    "cifar10": (50000, 10000),
    "cifar100": (50000, 10000),
    "flowers102": (2040, 6149),  # official train + val (1020 each), test
}
STEPS = 4  # training steps per calibration epoch
SEARCH_OVERHEAD = 1.6  # EDropout's population search on top of its training epochs (measured: 1.35-2x)
# Cells that fill every core (workers x threads >= cores) train this much slower than the calibration, which
# has a core to itself: the driver, MLflow and the other workers share the cores and their caches (measured:
# the default study's cells, 2 workers on 2 cores, trained 1.75x slower than `train` alone on one core).
SHARED_CORES_SLOWDOWN = 1.75
# Per cell beyond its compute: the fork from the preloaded server, data, model, MAC count, MLflow run, files
# (fitted: the default study's 456 cells, 2 workers on 2 cores, 2026-11-26: 505 s of cell stages for 567 s
# of estimated compute over two workers -> 0.97 s a cell)
CELL_OVERHEAD_S = 1.0
STUDY_OVERHEAD_S = 60.0  # DVC and seven stage processes (about 8 s of imports each), aggregate, report
LATENCY = Protocol()  # the latency stage's defaults (pipelines/latency.py)
YES_ENV = "BENCHMARK_YES"  # 1: start a study without asking, whatever its estimate (CI, scripts)
THRESHOLD_ENV = "BENCHMARK_CONFIRM_HOURS"  # estimates above this many hours ask first
DEFAULT_THRESHOLD_HOURS = 2.0


def split_sizes(cfg: RunConfig) -> tuple[int, int, int] | None:
    """(train, val, test) images of the cell's dataset as the harness splits it; None when unknown."""
    if cfg.data.name not in IMAGES:
        return None
    total, test = IMAGES[cfg.data.name]
    if test is None:
        test = round(total * cfg.data.test_fraction)
        total -= test
    val = round(total * cfg.data.val_fraction)
    return total - val, val, test


@dataclass
class Calibration:
    """Seconds per step of one arch at one dataset's shape, measured on `device`."""

    device: str
    train_step_s: float  # forward + backward + optimizer step on one training batch
    eval_step_s: float  # forward of one evaluation batch
    latency_s: float  # the cell's latency measurement (warm-up + repeats at each batch size, on the CPU)


def _timed(fn, cpu_threads: int | None) -> float:
    start, start_cpu = time.perf_counter(), time.process_time()
    fn()
    took = time.perf_counter() - start
    return min(took, (time.process_time() - start_cpu) / cpu_threads) if cpu_threads else took


def _fastest(fn, repeats: int, budget_s: float, cpu_threads: int | None = None) -> float:
    """The fastest of `repeats` timed calls (after one warm-up), stopping early past `budget_s`.

    With `cpu_threads` (work on the CPU) a call costs the CPU time it used divided by its threads,
    never more than its wall time: what it takes with its cores to itself, so other programs on a
    busy machine do not inflate the estimate. Without (a GPU, synchronised in `fn`), wall time. A call
    slower than `budget_s` (a big network on a CPU) is timed once: its warm-up is a small part of it."""
    best, spent = math.inf, 0.0
    for i in range(repeats + 1):
        took = _timed(fn, cpu_threads)
        if i == 0 and took <= budget_s:
            continue  # the warm-up
        best, spent = min(best, took), spent + took
        if spent > budget_s:
            break
    return best


def calibrate(cfg: RunConfig, repeats: int = 5, budget_s: float = 3.0) -> Calibration:
    """Time the harness's own training loop (`cell.training.train`, one epoch of `STEPS` batches of
    random images), an evaluation batch and the latency measurement of `cfg`'s arch at its dataset's
    shape, on its device, precision and threads. Raises UserError for a device not on this machine."""
    from torch.utils.data import TensorDataset

    from benchmark.cell.device import autocast, prepare_model, to_device
    from benchmark.cell.measure import torch_threads
    from benchmark.cell.models import create_model
    from benchmark.cell.training import train

    spec = get_spec(cfg.data.name)
    size, classes = cfg.data.input_size or spec.native_size, spec.num_classes or 10
    device = resolve_device(cfg.train.device)

    def images(n: int) -> TensorDataset:
        return TensorDataset(torch.randn(n, spec.in_chans, size, size), torch.randint(0, classes, (n,)))

    with torch_threads(cfg.train.threads) as threads:
        torch.manual_seed(0)
        model = create_model(cfg.model, classes, spec.in_chans, size)
        prepare_model(model, device, cfg.train.channels_last)
        on_cpu = threads if device.type == "cpu" else None
        no_val = images(0)

        def sync() -> None:
            if device.type == "cuda":
                torch.cuda.synchronize(device)

        def epoch(train_set: TensorDataset) -> None:
            train(model, train_set, no_val, cfg.train, 0, classes, epochs=1, progress=False)
            sync()

        probe = _timed(lambda: epoch(images(cfg.train.batch_size)), on_cpu)  # one batch, cold
        steps = STEPS if probe * STEPS < budget_s else 1  # a slow network: its one cold batch is the figure
        train_set = images(steps * cfg.train.batch_size)
        xe = to_device(images(cfg.train.eval_batch_size).tensors[0], device, cfg.train.channels_last)

        @torch.inference_mode()
        def forward() -> None:
            model.eval()
            with autocast(device, cfg.train.precision):
                model(xe)
            sync()

        train_step = _fastest(lambda: epoch(train_set), repeats, budget_s, on_cpu) / steps if steps > 1 else probe
        eval_step = _fastest(forward, repeats, budget_s, on_cpu)
        cpu_model = model.cpu().eval()
        latency = 0.0
        passes = cfg.measure.latency_warmup + cfg.measure.latency_repeats
        for batch in cfg.measure.latency_batch_sizes:
            xb = torch.randn(batch, spec.in_chans, size, size)
            with torch_threads(cfg.measure.threads) as latency_threads:
                latency += passes * _fastest(lambda xb=xb: cpu_model(xb), repeats, budget_s, latency_threads)
    return Calibration(str(device), train_step, eval_step, latency)


def cell_epochs(cfg: RunConfig) -> tuple[float, int]:
    """(training epochs of the cell itself, epochs of the dense network it starts from (0: none)).

    Post-training and iterative methods fine-tune a dense network that every such cell of the same
    arch/dataset/seed shares (trained once); the others train the whole budget themselves."""
    epochs = cfg.train.epochs
    if cfg.method == "dense":
        return epochs, 0
    spec = get_method(cfg.method)
    if spec.schedule in ("after_training", "iterative"):
        finetune = cfg.method_args.get("finetune_epochs")
        finetune = max(1, epochs // 2) if finetune is None else finetune
        first = epochs if cfg.train.budget == "paper" else max(1, epochs - finetune)
        return finetune, first
    return epochs * (SEARCH_OVERHEAD if cfg.method == EDROPOUT else 1.0), 0


@dataclass
class Estimate:
    seconds: float
    device: str
    workers: int
    cell_seconds: dict[str, float] = field(default_factory=dict)  # compute per method (summed over cells)
    note: str = ""

    @property
    def hours(self) -> float:
        return self.seconds / 3600


def _calibration_key(cfg: RunConfig) -> tuple:
    t, d = cfg.train, cfg.data
    return (
        cfg.model.arch,
        d.name,
        d.input_size,
        t.batch_size,
        t.eval_batch_size,
        t.device,
        t.precision,
        t.channels_last,
        t.threads,
        t.optimizer,
    )


def estimate(profile: Profile, cells: list[Cell], calibrate_fn=calibrate) -> Estimate:
    """Wall-time estimate of running `cells` (the dense and pruning cells of `profile`) from nothing."""
    calibrations: dict[tuple, Calibration] = {}
    per_method: Counter[str] = Counter()
    dense_starts: dict[tuple, float] = {}  # shared dense networks, trained once each
    device = str(resolve_device(cells[0].config.train.device))  # one device per profile (its `set`)
    workers = parallel_cells(profile, len(cells), device)
    threads = max(c.config.train.threads for c in cells)
    slowdown = SHARED_CORES_SLOWDOWN if device == "cpu" and workers * threads >= cpu_cores() else 1.0
    for cell in cells:
        cfg = cell.config
        sizes = split_sizes(cfg)
        if sizes is None:
            raise UserError(f"cannot estimate dataset {cfg.data.name!r}: its size is not declared in study.plan.IMAGES")
        key = _calibration_key(cfg)
        if key not in calibrations:
            try:
                calibrations[key] = calibrate_fn(cfg)
            except UserError:
                raise
            except Exception as exc:  # the cell itself would fail the same way: say so, no traceback
                size = cfg.data.input_size or get_spec(cfg.data.name).native_size
                raise UserError(
                    f"calibrating {cfg.model.arch} on {cfg.data.name} at {size} px failed: {type(exc).__name__}: {exc}"
                ) from None
        cal = calibrations[key]
        train, val, test = sizes
        steps = math.ceil(train / cfg.train.batch_size)
        eval_steps = math.ceil(val / cfg.train.eval_batch_size)
        epoch_s = steps * cal.train_step_s + eval_steps * cal.eval_step_s
        own, first = cell_epochs(cfg)
        if cfg.method == "dense":  # the dense stage stores its network: post-training cells start from it
            dense_starts[(key, cfg.seed, cfg.train.epochs)] = 0.0
        elif first:
            dense_starts.setdefault((key, cfg.seed, first), first * epoch_s * slowdown)
        measure = (math.ceil(test / cfg.train.eval_batch_size) + eval_steps) * cal.eval_step_s + 2 * cal.latency_s
        per_method[cfg.method] += (own * epoch_s + measure) * slowdown + CELL_OVERHEAD_S
    # the latency stage times each network and its dense reference alone, for at least `min_rounds` rounds of
    # `block_ms` each (more when a forward pass is longer), then loads the next: 0.24 s a cell measured
    rounds_s = LATENCY.min_rounds * 2 * LATENCY.block_ms / 1000
    latency_stage = sum(max(rounds_s, 2 * calibrations[_calibration_key(c.config)].latency_s) for c in cells)
    compute = sum(per_method.values()) + sum(dense_starts.values())
    seconds = compute / workers + latency_stage + STUDY_OVERHEAD_S
    return Estimate(seconds, device, workers, dict(per_method))


def parallel_cells(profile: Profile, cells: int, device: str) -> int:
    """Cells at a time on this machine: the executor's workers, but no more than its CPUs (ray's
    cpus_per_cell) and GPUs hold; cells on a GPU are counted one per GPU (two sharing one are not faster)."""
    settings = profile.executor
    workers, _ = plan_workers(settings, cells)
    gpus = torch.cuda.device_count() if device.startswith("cuda") else 0
    if settings.backend == "ray":
        workers = min(workers, int(cpu_cores() // max(settings.cpus_per_cell, 1e-9)))
        if settings.gpus_per_cell:
            workers = min(workers, int(torch.cuda.device_count() // settings.gpus_per_cell))
    if gpus:
        workers = min(workers, gpus)
    return max(1, workers)


def _duration(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"
    return f"{seconds / 3600:.1f} h"


def _bytes(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def profile_cells(profile: Profile) -> list[Cell]:
    """Every cell the study stages run for `profile` (dense stage, then cells stage)."""
    from benchmark.core.paths import results_root

    return dense_cells(profile, results_root()) + method_cells(profile, results_root())


def plan_text(profile: Profile, calibrate_fn=calibrate) -> str:
    """The plan of `profile`: cells per method x arch x dataset, datasets to pull, estimated wall time."""
    cells = profile_cells(profile)
    per_where = len(profile.datasets) * len(profile.archs) * len(profile.seeds)
    lines = [
        f"profile {profile.name!r}: {len(cells)} cells = {len(profile.datasets)} datasets x "
        f"{len(profile.archs)} archs x {len(profile.seeds)} seeds x {len(cells) // per_where} cells each"
    ]
    lines.append(
        f"  datasets: {', '.join(profile.datasets)}; archs: {', '.join(profile.archs)}; "
        f"seeds: {', '.join(map(str, profile.seeds))}"
    )
    counts: Counter[str] = Counter(c.config.method for c in cells)
    first = cells[0].config
    points: dict[str, list[str]] = {}  # the operating points of one (dataset, arch, seed)
    for cell in cells:
        cfg = cell.config
        if (cfg.data.name, cfg.model.arch, cfg.seed) == (first.data.name, first.model.arch, first.seed):
            label = cell.operating_point.removeprefix(f"{cfg.method}@")
            points.setdefault(cfg.method, []).append("own rate" if label in (cfg.method, "dense") else label)
    width = max(map(len, counts)) + 2
    lines.append(f"  {'METHOD':{width}s}{'CELLS':>6s}  OPERATING POINTS (each dataset x arch x seed)")
    for method, n in counts.items():
        lines.append(f"  {method:{width}s}{n:6d}  {', '.join(points[method])}")
    lines.append("datasets:")
    total = 0
    for dataset in profile.datasets:
        fetch = get_spec(dataset).fetch
        cfg = profile.config("dense", dataset, profile.archs[0], profile.seeds[0])
        root = Path(cfg.data.root)
        if fetch.kind == "builtin":
            status = "builtin, nothing to pull"
        elif fetch.kind == "local":
            status = f"local, not downloaded: put {fetch.where} under {str(root)!r}"
        elif fetch.present is not None and fetch.present(root):
            status = f"present under {str(root)!r} ({_bytes(fetch.download_bytes)})"
        else:
            total += fetch.download_bytes
            status = f"to pull: {_bytes(fetch.download_bytes)}"
        lines.append(f"  {dataset:14s} {status}")
    lines.append(f"  download: {_bytes(total)}")
    try:
        est = estimate(profile, cells, calibrate_fn)
    except UserError as exc:
        lines.append(f"estimate: not available on this machine: {exc}")
        return "\n".join(lines)
    lines.append(
        f"estimate: {_duration(est.seconds)} wall on {est.device} with {est.workers} worker(s) "
        f"(calibrated now on this machine, from nothing; finished cells are skipped)"
    )
    return "\n".join(lines)


def threshold_hours() -> float:
    value = os.environ.get(THRESHOLD_ENV, str(DEFAULT_THRESHOLD_HOURS))
    try:
        hours = float(value)
    except ValueError:
        raise UserError(f"bad value for {THRESHOLD_ENV}: {value!r}; give a number of hours, e.g. 2") from None
    if not math.isfinite(hours) or hours < 0:
        raise UserError(f"bad value for {THRESHOLD_ENV}: {value!r}; give a number of hours >= 0")
    return hours


def confirm_cost(profile: Profile, calibrate_fn=calibrate) -> Estimate | None:
    """Ask before starting a study estimated above the threshold (`BENCHMARK_CONFIRM_HOURS`, default 2 h).

    `BENCHMARK_YES=1` goes on without asking (CI, scripts); on a terminal the user answers; otherwise
    a UserError (one line, exit 2) says the estimate and how to go on. Returns the estimate (None when
    told to go on)."""
    if os.environ.get(YES_ENV, "") not in ("", "0"):
        return None
    limit = threshold_hours()
    est = estimate(profile, profile_cells(profile), calibrate_fn)
    if est.hours <= limit:
        return est
    what = (
        f"profile {profile.name!r} is estimated at {_duration(est.seconds)} on {est.device} "
        f"(above {limit:g} h; `python -m benchmark plan {profile.name}`)"
    )
    if sys.stdin is not None and sys.stdin.isatty():
        answer = input(f"{what}. Start it? [y/N] ").strip().lower()
        if answer in ("y", "yes"):
            return est
    raise UserError(f"{what}; not started: set {YES_ENV}=1 to go on, or raise {THRESHOLD_ENV}")


def main(argv: list[str]) -> int:
    """`python -m benchmark plan [PROFILE]`."""
    from benchmark.study.profiles import get_profile, load_params

    if argv and argv[0] in ("-h", "--help"):
        print(f"usage: python -m benchmark plan [PROFILE]\n\n{__doc__.splitlines()[0]}")
        return 0
    if len(argv) > 1 or any(a.startswith("-") for a in argv):
        raise UserError(f"usage: python -m benchmark plan [PROFILE], got {' '.join(argv)!r}")
    print(plan_text(get_profile(load_params(), argv[0] if argv else None)))
    return 0
