"""How much faster a study runs with N local workers than with one, measured side by side.

    python -m benchmark.scaling                      # 8 dense cells, 1 worker then 2 workers
    python -m benchmark.scaling --workers 4 --cells 16 --arch resnet10t --epochs 4

The same cells run twice into fresh folders (MLflow into a temporary sqlite store): first with one
worker that has every core as torch threads (what a single process gets), then with N workers of
cores // N threads each. The ratio of the two wall times is the speedup.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from benchmark.config import RunConfig
from benchmark.errors import UserError
from benchmark.execution import cpu_cores, run_study
from benchmark.runner import TrackingSettings
from benchmark.study import Cell, ExecutorSettings


def cells(folder: Path, n: int, arch: str, epochs: int, method: str) -> list[Cell]:
    out = []
    for seed in range(n):
        cfg = RunConfig(method=method, seed=seed)
        cfg.model.arch, cfg.train.epochs = arch, epochs
        out.append(Cell(cfg, folder / f"seed{seed}", "dense"))
    return out


def timed(workers: int, n: int, arch: str, epochs: int, method: str) -> float:
    with tempfile.TemporaryDirectory(prefix="scaling-") as tmp:
        tracking = TrackingSettings(uri=f"sqlite:///{Path(tmp) / 'mlflow.db'}")
        start = time.perf_counter()
        outcome = run_study(f"{workers}-worker", cells(Path(tmp), n, arch, epochs, method),
                            ExecutorSettings(workers=workers), tracking, lock_folder=Path(tmp))
        seconds = time.perf_counter() - start
    if outcome.failed:
        raise UserError(f"{len(outcome.failed)} cells failed: {outcome.failed[0][1]}")
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmark.scaling", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cells", type=int, default=8)
    parser.add_argument("--arch", default="resnet10t")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--method", default="dense")
    args = parser.parse_args(argv)
    try:
        if args.workers < 2 or args.cells < 1 or args.epochs < 1:
            raise UserError("--workers must be >= 2, --cells and --epochs >= 1")
        one = timed(1, args.cells, args.arch, args.epochs, args.method)
        many = timed(args.workers, args.cells, args.arch, args.epochs, args.method)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    cores = cpu_cores()
    print(f"\n{args.cells} x {args.method} {args.arch}, {args.epochs} epochs, {cores} cores")
    print(f"| workers | torch threads each | wall (s) | speedup |\n|---|---|---|---|")
    print(f"| 1 | {cores} | {one:.1f} | 1.00 |")
    print(f"| {args.workers} | {max(1, cores // args.workers)} | {many:.1f} | {one / many:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
