"""Stage `latency`: each finished cell's network timed on its own, interleaved with its dense reference.

Inside a cell, latency is timed while another worker trains beside it, so it says little. This stage
runs after the cells, in one process, one network at a time, with the cell's torch threads. For each
batch size it times rounds of the dense network of the same dataset, arch and seed and the pruned one,
pass by pass in alternation (dense, pruned, pruned, dense, ...: both see the same moment of the
machine), for about `block_ms` of the slower one; a round keeps each one's fastest pass (noise only
adds time). After `min_rounds`, it stops when the reported speed-up (the median of the rounds' dense /
pruned ratios) is precise: its standard error, 1.2533 x spread / sqrt(rounds), at most `target_error`
(trusted), or when the cell's share of `max_seconds` is spent (flagged untrusted). The spread is the
robust CV (1.4826 x median absolute deviation / median), so one disturbed round does not count. The
ratio is judged, not each network's time: on a shared CPU absolute times move with the load (15-30%
between whole measurements here) while the two halves of a round see the same load. Reported: each
network's median round time and spread, the speed-up (median of the ratios) and its spread. A dense
cell is timed alone, judged on the spread of its own times.

Records go to `results/latency/<the cell's folder under results/>/latency.json`, outside the cells'
folders, so the cells stage's output stays as it was. A record whose key (both cells' results, the
protocol, `MEASUREMENT`, the machine) is current is kept, so a rerun with nothing changed takes seconds.

Tool for the spread of whole measurements (same pair measured `--times` times):

    python -m benchmark.study.latency --repeat-pair DENSE_RESULT_DIR PRUNED_RESULT_DIR --times 5
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from benchmark.cell.checkpoint import NotLoadable, load_network
from benchmark.cell.data import get_spec
from benchmark.cell.measure import torch_threads
from benchmark.core import metrics as M
from benchmark.core.errors import UserError
from benchmark.core.io import read_json, write_json_atomic
from benchmark.core.paths import METRICS_FILE, MODEL_FILE
from benchmark.study.cells import Cell, dense_cells, method_cells
from benchmark.study.profiles import Profile

LATENCY_FILE = "latency.json"
MAD_TO_SD = 1.4826  # the median absolute deviation times this estimates the standard deviation (normal data)
SOURCE_STAGE, SOURCE_CELL = "latency stage", "in cell, beside training"
MEASUREMENT = 2  # bump when a change alters what a record measures: every record is then redone


@dataclass(frozen=True)
class Protocol:
    """When a timing is good enough: the spread to reach, and what it may cost."""

    # relative standard error of the reported median at which it is trusted: half the 5% CV asked of
    # repeated whole measurements, as drift between measurements about doubled it on this 2-core CPU
    target_error: float = 0.025
    max_seconds: float = 2.0  # per cell (shared by its batch sizes), after min_rounds; stopping here: untrusted
    min_rounds: int = 10  # rounds before the spread is believed (and before the cap applies)
    block_ms: float = 10.0  # each round lasts about this long for the slower network (at least one pass each)


def robust_cv(values: list[float]) -> float:
    """1.4826 x median absolute deviation / median: the CV (std / mean) for well-behaved data, but one
    disturbed round (another process woke up) does not move it. NaN for fewer than 2 values."""
    if len(values) < 2:
        return math.nan
    mid = statistics.median(values)
    mad = statistics.median(abs(v - mid) for v in values)
    return MAD_TO_SD * mad / mid if mid > 0 else math.nan


def median_error(values: list[float]) -> float:
    """Relative standard error of the median of `values`: 1.2533 x robust CV / sqrt(n) (normal data)."""
    return 1.2533 * robust_cv(values) / math.sqrt(len(values)) if values else math.nan


def _pass_seconds(model: nn.Module, x: torch.Tensor) -> float:
    start = time.perf_counter()
    model(x)
    return time.perf_counter() - start


def _round_ms(models: dict[str, nn.Module], x: torch.Tensor, passes: int, flip: bool) -> dict[str, float]:
    """One round: `passes` forward passes of each network, alternating pass by pass (so both see the same
    moment of the machine), and each one's fastest pass in ms (on a shared CPU noise only adds time)."""
    names = list(models)
    best = dict.fromkeys(names, math.inf)
    for i in range(passes):
        for name in names if (i % 2 == 0) != flip else names[::-1]:  # who goes first alternates too
            best[name] = min(best[name], _pass_seconds(models[name], x))
    return {name: 1000.0 * value for name, value in best.items()}


def paired_values(rounds: dict[str, list[float]]) -> list[float]:
    """What the spread is judged on: with two networks each round's ratio first / second (dense / pruned:
    the speed-up, paired, so a slow spell that hits both cancels), with one its round times."""
    series = list(rounds.values())
    return [a / b for a, b in zip(*series)] if len(series) == 2 else series[0]


@torch.inference_mode()
def time_interleaved(
    models: dict[str, nn.Module], x: torch.Tensor, protocol: Protocol, warmup: int = 3
) -> tuple[dict[str, list[float]], bool]:
    """Each model's round times (ms) on `x`, in alternating rounds: at least `min_rounds`, then until the
    `median_error` of `paired_values` <= the target (trusted) or `max_seconds` is spent (untrusted)."""
    for model in models.values():
        model.eval()
        for _ in range(max(1, warmup)):
            model(x)
    slowest = max(_pass_seconds(model, x) for model in models.values()) * 1000.0
    passes = max(1, min(1000, math.ceil(protocol.block_ms / slowest)))
    rounds: dict[str, list[float]] = {name: [] for name in models}
    start = time.perf_counter()
    while True:
        done = len(next(iter(rounds.values())))
        for name, ms in _round_ms(models, x, passes, flip=done % 2 == 1).items():
            rounds[name].append(ms)
        if done + 1 < protocol.min_rounds:  # a slow network gets its rounds whatever the cap
            continue
        if median_error(paired_values(rounds)) <= protocol.target_error:
            return rounds, True
        if time.perf_counter() - start >= protocol.max_seconds:
            return rounds, False


@dataclass
class Shape:
    """What a cell's network is timed on, read from its metrics.json."""

    in_chans: int
    input_size: int
    batches: list[int]
    threads: int
    warmup: int

    @classmethod
    def of(cls, metrics: dict[str, Any]) -> Shape:
        cfg = metrics.get("config", {})
        data, measure, train = cfg.get("data", {}), cfg.get("measure", {}), cfg.get("train", {})
        spec = get_spec(metrics.get("dataset") or data.get("name"))
        return cls(
            in_chans=spec.in_chans,
            input_size=int(data.get("input_size") or spec.native_size),
            batches=list(measure.get("latency_batch_sizes") or [1, 64]),
            # measure.threads when a profile sets it, else the threads the cell computed with
            threads=int(measure.get("threads") or train.get("threads") or 1),
            warmup=int(measure.get("latency_warmup", 3)),
        )


def measure_networks(
    pruned: nn.Module, dense: nn.Module | None, shape: Shape, protocol: Protocol, mac_reduction: float | None = None
) -> dict[str, Any]:
    """The latency columns of one cell: `pruned` interleaved with `dense` (None: a dense cell, alone)."""
    out: dict[str, Any] = {M.LATENCY_THREADS: shape.threads}
    trusted = True
    generator = torch.Generator().manual_seed(0)
    with torch_threads(shape.threads):
        for b in shape.batches:
            x = torch.randn(b, shape.in_chans, shape.input_size, shape.input_size, generator=generator)
            models = {"pruned": pruned} if dense is None else {"dense": dense, "pruned": pruned}
            share = replace(protocol, max_seconds=protocol.max_seconds / len(shape.batches))
            rounds, converged = time_interleaved(models, x, share, shape.warmup)
            trusted = trusted and converged
            out[M.latency_ms(b)], out[M.latency_cv(b)] = (
                statistics.median(rounds["pruned"]),
                robust_cv(rounds["pruned"]),
            )
            out[M.latency_rounds(b)] = len(rounds["pruned"])
            if dense is not None:
                out[M.dense_latency_ms(b)], out[M.dense_latency_cv(b)] = (
                    statistics.median(rounds["dense"]),
                    robust_cv(rounds["dense"]),
                )
                ratios = paired_values(rounds)
                out[M.latency_speedup(b)], out[M.latency_speedup_cv(b)] = statistics.median(ratios), robust_cv(ratios)
                if mac_reduction:
                    out[M.speedup_per_mac_reduction(b)] = out[M.latency_speedup(b)] / mac_reduction
    out[M.LATENCY_TRUSTED] = trusted
    return out


# -- the stage ------------------------------------------------------------------------------------------


def latency_path(results: Path, cell_out: Path) -> Path:
    """Where the latency record of the cell in `cell_out` goes: the same folder under results/latency/."""
    return Path(results) / "latency" / Path(cell_out).relative_to(results) / LATENCY_FILE


def _identity(metrics: dict[str, Any]) -> dict[str, Any]:
    """What makes a result the one a record was measured on (a re-run cell has another `finished_at`)."""
    return {key: metrics.get(key) for key in ("config_hash", "code_hash", "finished_at")}


@functools.cache
def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        names = [line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return f"{cpu}, {len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()} cores"


def record_key(metrics: dict[str, Any], dense: dict[str, Any] | None, protocol: Protocol) -> dict[str, Any]:
    return {
        "cell": _identity(metrics),
        "dense": _identity(dense) if dense is not None else None,
        "protocol": asdict(protocol),
        "measurement": MEASUREMENT,
        "machine": machine(),
    }


class _Loader:
    """torch.load with the last dense network kept: the cells of one (dataset, arch, seed) come in a row."""

    def __init__(self) -> None:
        self.path: Path | None = None
        self.model: nn.Module | None = None

    def dense(self, path: Path) -> nn.Module:
        if path != self.path:
            self.path, self.model = path, load_network(path)
        return self.model

    @staticmethod
    def load(path: Path) -> nn.Module:
        return load_network(path)


def measure_cell(
    cell: Cell, dense: Cell | None, results: Path, protocol: Protocol, loader: _Loader | None = None
) -> str:
    """Time one cell if it needs it; returns what happened: measured, untrusted, current, or why not."""
    loader = loader or _Loader()
    metrics = read_json(cell.out / METRICS_FILE)
    if not metrics or metrics.get("status") != "finished":
        return "not finished"
    dense_metrics = None
    if dense is not None:
        dense_metrics = read_json(dense.out / METRICS_FILE)
        if not dense_metrics or dense_metrics.get("status") != "finished":
            return "dense not finished"
    paths = [cell.out / MODEL_FILE] + ([dense.out / MODEL_FILE] if dense is not None else [])
    if not all(path.is_file() for path in paths):
        return f"no saved network ({MODEL_FILE})"
    key = record_key(metrics, dense_metrics, protocol)
    target = latency_path(results, cell.out)
    previous = read_json(target)
    if previous is not None and previous.get("key") == key:
        return "current"
    start, load_before = time.perf_counter(), os.getloadavg()[0]
    try:
        pruned = loader.load(paths[0])
        reference = loader.dense(paths[1]) if dense is not None else None
    except NotLoadable:  # e.g. a network saved by an older version, or a planted file
        return "network not loadable"
    columns = measure_networks(pruned, reference, Shape.of(metrics), protocol, metrics.get(M.MAC_REDUCTION))
    record = {
        "key": key,
        "cell": _identity(metrics),
        "metrics": columns,
        "load_average_before": load_before,
        "seconds": time.perf_counter() - start,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(target, record)
    return "measured" if columns[M.LATENCY_TRUSTED] else "untrusted"


def latency_jobs(profile: Profile, results: Path) -> list[tuple[Cell, Cell | None]]:
    """Every cell of the profile with the dense cell it is timed against (None for a dense cell)."""
    dense = {(c.config.data.name, c.config.model.arch, c.config.seed): c for c in dense_cells(profile, results)}
    jobs: list[tuple[Cell, Cell | None]] = [(cell, None) for cell in dense.values()]
    for cell in method_cells(profile, results):
        jobs.append((cell, dense[(cell.config.data.name, cell.config.model.arch, cell.config.seed)]))
    return jobs


def run_latency_stage(profile: Profile, results: Path, protocol: Protocol | None = None) -> dict[str, int]:
    """Time every finished cell of `profile` that has no current record; returns counts per outcome."""
    from tqdm import tqdm

    protocol, loader, counts = protocol or Protocol(), _Loader(), {}
    jobs = latency_jobs(profile, results)
    (Path(results) / "latency").mkdir(parents=True, exist_ok=True)  # the stage's output, even when empty
    bar = tqdm(jobs, desc="latency", unit="cell", file=sys.stderr, disable=None, dynamic_ncols=True)
    for cell, dense in bar:
        outcome = measure_cell(cell, dense, results, protocol, loader)
        counts[outcome] = counts.get(outcome, 0) + 1
        if outcome == "untrusted":
            bar.write(
                f"latency: {cell.label}: error above {protocol.target_error:.1%} after {protocol.max_seconds:g} s"
            )
    return counts


def merge_latency(row: dict[str, Any], results: Path, cell: Cell) -> dict[str, Any]:
    """A results.csv row with the latency stage's columns in place of the cell's own timings; a finished
    cell without a current record keeps its in-cell numbers, flagged untrusted."""
    if row.get("status") != "finished":
        return row
    record = read_json(latency_path(results, cell.out))
    if record is not None and record.get("cell") == _identity(row):
        row.update(record["metrics"])
        row[M.LATENCY_SOURCE] = SOURCE_STAGE
    else:
        row[M.LATENCY_TRUSTED], row[M.LATENCY_SOURCE] = False, SOURCE_CELL
    return row


# -- the tool: how repeatable is one whole measurement? -------------------------------------------------


def _load_result(folder: Path) -> tuple[dict[str, Any], Path]:
    metrics, model = read_json(Path(folder) / METRICS_FILE), Path(folder) / MODEL_FILE
    if not metrics or metrics.get("status") != "finished" or not model.is_file():
        raise UserError(f"{folder} holds no finished result with a saved network (run it with --save-model)")
    return metrics, model


def repeat_pair(dense_dir: Path, pruned_dir: Path, times: int = 5, protocol: Protocol | None = None) -> dict:
    """Measure the same dense/pruned pair `times` times, each a whole measurement as the stage makes it
    (networks loaded afresh); per batch size the values of each and their CV (std / mean) across them."""
    protocol = protocol or Protocol()
    (metrics, pruned), (_, dense) = _load_result(pruned_dir), _load_result(dense_dir)
    shape = Shape.of(metrics)
    runs = [measure_networks(load_network(pruned), load_network(dense), shape, protocol) for _ in range(times)]
    out = {}
    for b in shape.batches:
        columns = {"speedup": M.latency_speedup(b), "pruned_ms": M.latency_ms(b), "dense_ms": M.dense_latency_ms(b)}
        entry: dict[str, Any] = {}
        for name, column in columns.items():
            values = [run[column] for run in runs]
            entry[name] = values
            entry[f"{name}_cv"] = statistics.stdev(values) / statistics.mean(values) if len(values) > 1 else math.nan
        entry["within_cv"] = [run[M.latency_speedup_cv(b)] for run in runs]
        entry["rounds"] = [run[M.latency_rounds(b)] for run in runs]
        out[b] = entry
    out["trusted"] = sum(bool(run[M.LATENCY_TRUSTED]) for run in runs)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmark.study.latency", description=__doc__.split("\n")[0])
    parser.add_argument("--repeat-pair", nargs=2, metavar=("DENSE_DIR", "PRUNED_DIR"), required=True)
    parser.add_argument("--times", type=int, default=5, help="whole measurements of the pair (default 5)")
    parser.add_argument("--target-error", type=float, default=Protocol.target_error)
    parser.add_argument("--max-seconds", type=float, default=Protocol.max_seconds)
    args = parser.parse_args(argv)
    protocol = Protocol(target_error=args.target_error, max_seconds=args.max_seconds)
    print(f"machine: {machine()}; load average before: {os.getloadavg()[0]:.2f}")
    summary = repeat_pair(Path(args.repeat_pair[0]), Path(args.repeat_pair[1]), args.times, protocol)
    for b, entry in summary.items():
        if b == "trusted":
            continue
        print(
            f"batch {b}: speed-up {statistics.median(entry['speedup']):.3f}x, CV across {args.times} measurements "
            f"{entry['speedup_cv']:.2%} (dense ms CV {entry['dense_ms_cv']:.2%}, pruned ms CV "
            f"{entry['pruned_ms_cv']:.2%}); speed-ups {[round(v, 3) for v in entry['speedup']]}; within each, "
            f"robust CV {[f'{v:.1%}' for v in entry['within_cv']]} after rounds {entry['rounds']}"
        )
    print(f"trusted measurements: {summary['trusted']}/{args.times}; load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    try:
        main()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
