"""EDropout against its controls, paired by seed, in one command.

    python -m benchmark.tools.controls                       # params.yaml profile 'controls': 5 seeds, 2 archs
    python -m benchmark.tools.controls --workers 8 --results /tmp/controls --out controls.md

Runs the profile's dense and method cells (finished cells are reused, like the study) into
`--results`, then prints EDropout minus each control per (dataset, arch): the mean paired
difference in top-1 with its 95% t interval, the p-value of a one-sample t-test on the
differences, and both methods' parameter pruning rates. Whatever it shows is the answer: an
interval that covers 0 means no difference was detected at this number of seeds.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import pandas as pd

from benchmark.core.errors import UserError
from benchmark.core.tracking import TrackingSettings
from benchmark.report.stats import control_comparisons, derive
from benchmark.study.aggregate import study_rows
from benchmark.study.cells import dense_cells, method_cells
from benchmark.study.profiles import get_profile, load_params
from benchmark.study.scheduler import run_study


def table(cells: pd.DataFrame) -> str:
    """The comparisons as a Markdown table."""
    lines = [
        "| dataset | arch | EDropout (point) minus | pairs | mean (pp) | 95% CI (pp) | MDE (pp) | p | p (Holm) |"
        " rate EDropout / control |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in control_comparisons(cells):
        interval = "-" if c.ci_low is None else f"[{c.ci_low:+.2f}, {c.ci_high:+.2f}]"
        mean = "-" if c.mean_difference is None else f"{c.mean_difference:+.2f}"
        p_value = f"{c.p_value:.3g}" if c.p_value is not None else (c.reason or "-")
        rates = "-" if c.method_rate is None else f"{c.method_rate:.3f} / {c.control_rate:.3f}"
        mde = "-" if c.mde is None else f"{c.mde:.2f}"
        holm = "-" if c.p_holm is None else f"{c.p_holm:.3g}"
        lines.append(
            f"| {c.dataset} | {c.arch} | {c.method} - {c.control} | {c.n_pairs} | {mean} | {interval} | {mde} | "
            f"{p_value} | {holm} | {rates} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmark.tools.controls",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--profile", default="controls", help="study profile in params.yaml (default: controls)")
    parser.add_argument("--workers", type=int, default=None, help="parallel cells (default: the profile's)")
    parser.add_argument("--results", type=Path, default=Path("results/controls"), help="result folder")
    parser.add_argument("--out", type=Path, default=None, help="also write the table (Markdown) here")
    parser.add_argument("--track", action="store_true", help="log the cells to MLflow (default: off)")
    args = parser.parse_args(argv)
    try:
        profile = get_profile(load_params(), args.profile)
        if "edropout" not in profile.methods:
            raise UserError(f"profile {args.profile!r} does not run edropout: nothing to compare its controls with")
        if args.workers is not None:
            if args.workers < 1:
                raise UserError(f"--workers must be >= 1, got {args.workers}")
            profile.executor.workers = args.workers
        results = args.results.resolve()
        os.environ["BENCHMARK_RESULTS"] = str(results)  # where controls read EDropout's result
        tracking = TrackingSettings(enabled=args.track)
        start = time.perf_counter()
        for stage, cells in (("dense", dense_cells(profile, results)), ("cells", method_cells(profile, results))):
            run_study(stage, cells, profile.executor, tracking, lock_folder=results)
        cells = derive(pd.DataFrame(study_rows(profile, results)))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    text = (
        f"EDropout minus each control, top-1 (pp), profile {profile.name!r}: {len(profile.seeds)} seeds, "
        f"{profile.epochs} epochs; {time.perf_counter() - start:.0f} s\n\n{table(cells)}\n"
    )
    print(text)
    if args.out is not None:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
