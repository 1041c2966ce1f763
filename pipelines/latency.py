"""Stage `latency`: every finished cell's network timed alone, interleaved with its dense reference.

Runs after `dense` and `cells` (nothing else computing): see benchmark/study/latency.py. Records land in
results/latency/<the cell's folder under results/>/latency.json; `aggregate` puts them in results.csv in
place of the timings taken inside the cells. A cell whose record is current is skipped.
"""

from __future__ import annotations

import argparse

from benchmark.core.paths import results_root
from benchmark.study.latency import Protocol, run_latency_stage
from benchmark.study.profiles import get_profile, load_params
from pipelines._main import stage_main


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipelines.latency")
    parser.add_argument(
        "--target-error", type=float, default=Protocol.target_error, help="relative standard error that is trusted"
    )
    parser.add_argument(
        "--max-seconds", type=float, default=Protocol.max_seconds, help="time cap per cell (after 10 rounds)"
    )
    args = parser.parse_args(argv)
    profile = get_profile(load_params())
    counts = run_latency_stage(
        profile, results_root(), Protocol(target_error=args.target_error, max_seconds=args.max_seconds)
    )
    print("latency: " + ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items())))


if __name__ == "__main__":
    stage_main(main)
