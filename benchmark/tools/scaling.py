"""How much faster a study runs with N local workers than with one, measured side by side.

    python -m benchmark.tools.scaling                                  # default profile, resnet10t, seed 0
    python -m benchmark.tools.scaling --profile default --arch test_resnet --workers 2

The same cells (one seed and one arch of a study profile: every method and operating point) run
twice into fresh folders, with MLflow logging into a temporary sqlite store: first with one worker
that has every core as torch threads (what a single process gets), then with N workers of
cores // N threads each. The dense network they start from is trained once beforehand and not
timed. The ratio of the two wall times is the speedup.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from benchmark.core.errors import UserError
from benchmark.core.tracking import TrackingSettings
from benchmark.study.backends import cpu_cores
from benchmark.study.cells import dense_cells, method_cells
from benchmark.study.profiles import ExecutorSettings, get_profile, load_params
from benchmark.study.scheduler import run_study


def timed(profile, workers: int, threads: int | None, root: Path, tracking: TrackingSettings) -> tuple[float, int]:
    results = root / f"results-{workers}"
    os.environ["BENCHMARK_RESULTS"] = str(results)  # where 'matched' cells read EDropout's rate
    cells = method_cells(profile, results)
    start = time.perf_counter()
    outcome = run_study(
        f"{workers}-worker",
        cells,
        ExecutorSettings(workers=workers, threads_per_worker=threads),
        tracking,
        lock_folder=results,
    )
    seconds = time.perf_counter() - start
    if outcome.failed:
        raise UserError(f"{len(outcome.failed)} cells failed, e.g. {outcome.failed[0][0]}: {outcome.failed[0][1]}")
    shutil.rmtree(results)
    return seconds, len(cells)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmark.tools.scaling",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--profile", default="default", help="study profile in params.yaml (default: default)")
    parser.add_argument("--arch", default="resnet10t", help="architecture whose cells are run (default: resnet10t)")
    parser.add_argument("--seed", type=int, default=0, help="seed whose cells are run (default: 0)")
    parser.add_argument(
        "--workers", type=int, default=2, help="parallel workers to compare with one, >= 2 (default: 2)"
    )
    parser.add_argument(
        "--single-threads", type=int, default=None, help="torch threads of the one-worker run (default: every core)"
    )
    args = parser.parse_args(argv)
    try:
        if args.workers < 2:
            raise UserError(f"--workers must be >= 2, got {args.workers}")
        profile = get_profile(load_params(), args.profile)
        profile.archs, profile.seeds = [args.arch], [args.seed]
        with tempfile.TemporaryDirectory(prefix="scaling-") as tmp:
            root = Path(tmp)
            os.environ["BENCHMARK_CHECKPOINTS"] = str(root / "checkpoints")
            tracking = TrackingSettings(uri=f"sqlite:///{root / 'mlflow.db'}")
            run_study(
                "dense (untimed)",
                dense_cells(profile, root / "dense"),
                ExecutorSettings(backend="serial"),
                tracking,
                lock_folder=root,
            )
            one, n = timed(profile, 1, args.single_threads, root, tracking)
            many, _ = timed(profile, args.workers, None, root, tracking)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    cores = cpu_cores()
    print(f"\n{n} cells: profile {profile.name}, {args.arch}, seed {args.seed}, {cores} cores")
    print("| workers | torch threads each | wall (s) | speedup |\n|---|---|---|---|")
    print(f"| 1 | {args.single_threads or cores} | {one:.1f} | 1.00 |")
    print(f"| {args.workers} | {max(1, cores // args.workers)} | {many:.1f} | {one / many:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
