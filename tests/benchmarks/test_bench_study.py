"""The study's machinery without training, and one cell's cost outside training.

`study`: a re-run with nothing to do (every cell planned, resolved, hashed and found done, MLflow
reconciled, as `dvc repro` does after a change that touches no cell), then `aggregate` (results.csv) and
`report` (report.md/html, figures), over synthetic finished results of 100, 1,000 and 10,000 cells: real
metrics.json files (copied from real tiny cells, with each cell's own config, hashes and jittered numbers)
and a real MLflow sqlite store. The aggregate and the report read files only; the planning reads MLflow.
The 10,000-cell point is timed by `make bench` only.

`workers`: the same tiny dense cells run by the local backend with one worker (every core as its torch
threads) and with two workers (cores // 2 each); each cell trains with its own `train.threads`. The gain of
running cells side by side (what `benchmark.tools.scaling` measured before it was retired into this group).

`cell-overhead`: a whole 1-epoch tiny cell (test_resnet, digits 8x8) with MLflow logging into an existing
sqlite store; its wall time minus its `train_seconds` is what the harness adds around training (dataset and
model build, config and code hashes, MLflow, measurement, evaluation, writes).
"""

from __future__ import annotations

import copy
import json
import random
import time
from pathlib import Path

import pytest

from benchmark.cell.runner import run_cell
from benchmark.core.config import RunConfig
from benchmark.core.paths import METRICS_FILE
from benchmark.core.tracking import TrackingSettings
from benchmark.report.build import build_report
from benchmark.study.aggregate import write_results_csv
from benchmark.study.backends import cpu_cores
from benchmark.study.cells import Cell, dense_cells, method_cells
from benchmark.study.profiles import EDROPOUT, ExecutorSettings, get_profile, load_params
from benchmark.study.scheduler import _check, run_study
from tests.benchmarks.conftest import Floor

# timm's test archs that take digits' 8x8 inputs
ARCHS = [
    "test_resnet",
    "test_efficientnet",
    "test_byobnet",
    "test_nfnet",
    "test_efficientnet_gn",
    "test_mambaout",
    "test_efficientnet_evos",
    "test_efficientnet_ln",
]
# cells -> (archs, seeds); 50 cells per (arch, seed): every method, rates [0.5, matched], two EDropout points
GRIDS = {100: (1, 2), 1_000: (4, 5), 10_000: (8, 25)}
TIMED_ONLY = 100  # `make test` (benchmarks disabled) runs the smallest grid once; the others are for `make bench`

STUDY_TARGET = 60.0  # issue 16's target for 10,000 cells: 51.0 and 56.6 s in two quiet runs (2-core, 2026-11-26)
STUDY_CEILING = 66.0  # what the bench enforces: the target with 10% for this shared machine's noise
GROWTH = Floor(
    floor=1.25,
    kind="cost",
    target="10,000 cells no worse than linear from 1,000 (per-cell cost at 10,000 <= at 1,000)",
    why="linear growth, with 25% for noise: a per-cell cost that grows with the study's size breaks it",
)
WORKER_CELLS = 6  # tiny dense cells per timed batch (`make test`: 2)
WORKERS_SPEEDUP = Floor(
    floor=1.0,
    target="two local workers finish a batch of cells faster than one worker with every core",
    why=(
        "measured 1.27-1.43x on this shared 2-core machine (README); the floor catches workers that serialise "
        "(a lock, a shared store) rather than a noisy gain"
    ),
)
OVERHEAD = Floor(
    floor=1.0,
    kind="cost",
    target="per-cell overhead outside training <= 1 s on the tiny cell",
    why="the issue's target itself (seconds, not a ratio)",
)


def tiny_config(method: str = "dense", **method_args) -> RunConfig:
    cfg = RunConfig(method=method)
    cfg.model.arch, cfg.train.epochs, cfg.data.input_size = "test_resnet", 1, 8
    cfg.measure.latency_repeats, cfg.measure.latency_warmup, cfg.measure.latency_batch_sizes = 2, 1, [1]
    cfg.method_args = dict(method_args)
    return cfg


@pytest.fixture(scope="module", autouse=True)
def _own_stores(tmp_path_factory):
    """Results and dense checkpoints in a temporary folder: nothing read from or written to the project's.

    Module scope: the variables are set for this file's tests only and removed after them (a session-wide
    autouse fixture would stay on for every later test of the worker and send their studies elsewhere)."""
    root = tmp_path_factory.mktemp("stores")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BENCHMARK_RESULTS", str(root / "results"))
        patch.setenv("BENCHMARK_CHECKPOINTS", str(root / "checkpoints"))
        yield


@pytest.fixture(scope="module")
def real_cells(tmp_path_factory) -> tuple[TrackingSettings, dict[str, dict]]:
    """A real MLflow sqlite store and the metrics.json of three real tiny cells (dense, EDropout, SNIP at
    0.5): the templates of the synthetic results."""
    root = tmp_path_factory.mktemp("real-cells")
    tracking = TrackingSettings(uri=f"sqlite:///{root / 'mlflow.db'}")
    templates = {}
    for kind, cfg in {
        "dense": tiny_config(),
        EDROPOUT: tiny_config(EDROPOUT),
        "rate": tiny_config("snip", sparsity=0.5),
    }.items():
        templates[kind] = run_cell(cfg, root / kind, tracking, progress=False)
    return tracking, templates


def synthetic_study(root: Path, cells: int, templates: dict[str, dict]):
    """A profile of `cells` cells and a finished result for every one of them under `root/results`."""
    profile = get_profile(load_params(), "default")
    archs, seeds = GRIDS[cells]
    profile.archs, profile.seeds, profile.operating_points = ARCHS[:archs], list(range(seeds)), [0.5, "matched"]
    results = root / "results"
    planned = dense_cells(profile, results) + method_cells(profile, results)
    assert len(planned) == cells, f"the grid of {archs} archs x {seeds} seeds has {len(planned)} cells"
    rng = random.Random(cells)
    for cell in planned:  # EDropout before the cells that read its result (method_cells' order)
        ident = _check(cell)
        method = cell.config.method
        kind = "dense" if method == "dense" else EDROPOUT if method.startswith(EDROPOUT) else "rate"
        metrics = copy.copy(templates[kind])
        rate = ident.config.method_args.get("sparsity", metrics.get("param_pruning_rate", 0.0))
        metrics.update(
            method=method,
            arch=cell.config.model.arch,
            seed=cell.config.seed,
            top1=min(100.0, max(0.0, metrics["top1"] + rng.gauss(0, 3))),
            param_pruning_rate=rate,
            config=ident.config.to_dict(),
            config_hash=ident.config_hash,
            code_hash=ident.code_hash,
        )
        cell.out.mkdir(parents=True, exist_ok=True)
        (cell.out / METRICS_FILE).write_text(json.dumps(metrics))
    return profile, results


def study_machinery(profile, results: Path, reports: Path, tracking: TrackingSettings, phases: dict[str, list]):
    """What runs when nothing needs training: both cell stages' planning, the aggregate, the report."""
    serial = ExecutorSettings(backend="serial")
    start = time.perf_counter()
    planned = 0
    for stage, cells in (("dense", dense_cells(profile, results)), ("cells", method_cells(profile, results))):
        outcome = run_study(stage, cells, serial, tracking, lock_folder=results)
        assert outcome.skipped == len(cells), f"{stage}: {len(cells) - outcome.skipped} cells were not found done"
        planned += len(cells)
    plan = time.perf_counter()
    counts = write_results_csv(profile, results, reports / "results.csv")
    assert counts["finished"] == planned, counts
    aggregate = time.perf_counter()
    build_report(reports / "results.csv", reports, "synthetic study", root=results.parent)
    assert (reports / "report.html").is_file()
    end = time.perf_counter()
    for name, seconds in (("plan", plan - start), ("aggregate", aggregate - plan), ("report", end - aggregate)):
        phases[name].append(seconds)


@pytest.mark.parametrize("cells", sorted(GRIDS))
def test_study_machinery(benchmark, pairs, real_cells, tmp_path, cells):
    if not benchmark.enabled and cells > TIMED_ONLY:
        pytest.skip(f"{cells} cells: timed by `make bench` only (`make test` runs the {TIMED_ONLY}-cell grid)")
    tracking, templates = real_cells
    profile, results = synthetic_study(tmp_path, cells, templates)
    phases: dict[str, list] = {"plan": [], "aggregate": [], "report": []}
    run = lambda: study_machinery(profile, results, tmp_path / "reports", tracking, phases)
    name = f"{cells}-cells"
    rounds, warmup = {100: (3, 1), 1_000: (2, 0), 10_000: (1, 0)}[cells]
    pairs.time(benchmark, "study", name, run, rounds=rounds, warmup=warmup)
    info = benchmark.extra_info
    info["cells"], info["grid"] = cells, f"{GRIDS[cells][0]} archs x {GRIDS[cells][1]} seeds, digits"
    info.update({f"{phase}_seconds": round(min(values), 3) for phase, values in phases.items()})
    if not benchmark.enabled:
        return
    best = pairs.best[("study", name)]
    info["seconds_per_1000_cells"] = round(1000 * best / cells, 3)
    if cells == 10_000:
        info["target"] = f"<= {STUDY_TARGET:g} s for 10,000 cells"
        # per-cell cost at 10,000 over per-cell cost at 1,000
        pairs.best[("study", "per-cell@10000")] = best / cells
        if ("study", "1000-cells") in pairs.best:
            pairs.best[("study", "per-cell@1000")] = pairs.best[("study", "1000-cells")] / 1000
        pairs.check(benchmark, "study", "per-cell@10000", "per-cell@1000", GROWTH, label="growth")
        info["target_met"] = best <= STUDY_TARGET
        assert best <= STUDY_CEILING, (
            f"10,000 cells took {best:.1f} s: above the ceiling {STUDY_CEILING:g} s "
            f"(target {STUDY_TARGET:g} s) ({info})"
        )


@pytest.mark.parametrize("workers", [1, 2])
def test_workers(benchmark, pairs, real_cells, tmp_path, workers):
    if not benchmark.enabled and workers == 1:
        pytest.skip("one worker: the same local backend as two, timed by `make bench` only")
    tracking, _ = real_cells
    count = WORKER_CELLS if benchmark.enabled else 2
    cores = cpu_cores()
    executor = ExecutorSettings(workers=workers, threads_per_worker=cores if workers == 1 else None)
    batches = iter(range(1000))

    def batch():  # fresh folders each round: a finished cell would be skipped
        folder = tmp_path / f"batch{next(batches)}"
        cells = []
        for seed in range(count):
            cfg = tiny_config()
            cfg.seed = seed
            cells.append(Cell(cfg, folder / f"seed{seed}", "dense"))
        outcome = run_study(f"{workers}-worker", cells, executor, tracking, lock_folder=folder)
        assert outcome.skipped == 0 and not outcome.failed, outcome.failed

    pairs.time(benchmark, "workers", f"{workers}-worker", batch, rounds=2, warmup=0)
    info = benchmark.extra_info
    info["cells"], info["torch_threads_per_worker"] = count, cores if workers == 1 else max(1, cores // workers)
    if workers == 2:
        pairs.check(benchmark, "workers", "2-worker", "1-worker", WORKERS_SPEEDUP)


def test_cell_overhead(benchmark, pairs, real_cells, tmp_path):
    tracking, _ = real_cells  # the store exists already, as in a study
    overheads, outs = [], iter(range(1000))

    def cell():
        start = time.perf_counter()
        metrics = run_cell(tiny_config(), tmp_path / f"cell{next(outs)}", tracking, progress=False)
        overheads.append(time.perf_counter() - start - metrics["train_seconds"])

    pairs.time(benchmark, "cell-overhead", "tiny-cell", cell, rounds=5, warmup=1)
    info = benchmark.extra_info
    info["overhead_seconds"] = round(min(overheads), 3)
    info["overhead_target"], info["overhead_floor"], info["overhead_why"] = (
        OVERHEAD.target,
        OVERHEAD.floor,
        OVERHEAD.why,
    )
    if benchmark.enabled:
        assert min(overheads) <= OVERHEAD.floor, f"overhead outside training {min(overheads):.2f} s > 1 s"
