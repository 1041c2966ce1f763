"""Every registered method at one operating point, side by side on one (arch, dataset, seed).

    python -m benchmark.tools.compare --sparsity 0.5                 # ResNet-18 on digits, seed 0
    python -m benchmark.tools.compare --sparsity 0.5 --methods dense,l1_filter --arch resnet10t

Cells are cached like the study's (config + code hash), so re-running only computes what changed.
Prints a markdown table; timings are from this machine, each pruned network timed right after
the unpruned one in the same process.
"""

from __future__ import annotations

import argparse
import sys

from benchmark.cell.plugins import METHODS, discover, get_method
from benchmark.core import metrics as M
from benchmark.core.config import RunConfig, parse_assignment, set_value
from benchmark.core.errors import UserError
from benchmark.core.io import read_json
from benchmark.core.paths import METRICS_FILE, results_root
from benchmark.core.tracking import TrackingSettings
from benchmark.study.cells import Cell, folder_of
from benchmark.study.profiles import ExecutorSettings
from benchmark.study.scheduler import run_study


def cells(
    methods: list[str], sparsity: float, arch: str, dataset: str, seed: int, epochs: int, overrides: list[str]
) -> list[Cell]:
    out = []
    for method in methods:
        cfg = RunConfig(method=method, seed=seed)
        cfg.model.arch, cfg.data.name, cfg.train.epochs = arch, dataset, epochs
        for text in overrides:
            set_value(cfg, *parse_assignment(text))
        point, folder = cfg.method, "own"
        if get_method(method).takes_sparsity:
            cfg.method_args["sparsity"], point, folder = sparsity, f"{sparsity:g}", f"s{sparsity:g}"
        out.append(Cell(cfg, folder_of(results_root(), "compare", cfg, folder), point))
    return out


def table(rows: list[dict]) -> str:
    head = (
        "| method | granularity | top-1 % | top-5 % | param pruning rate | MACs (M) | non-zero MACs (M) | "
        "latency b1 (ms) | speedup b1 | speedup / MAC reduction | train (s) incl. dense |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        spec = METHODS.get(r["method"])
        lines.append(
            f"| {r['method']} | {spec.granularity} | {r['top1']:.2f} | {r['top5']:.2f} | "
            f"{r.get(M.PARAM_PRUNING_RATE, 0.0):.3f} | {r[M.MACS] / 1e6:.2f} | {r[M.MACS_NONZERO] / 1e6:.2f} | "
            f"{r[M.LATENCY_MS_B1]:.2f} | {r.get(M.LATENCY_SPEEDUP_B1, 1.0):.2f} | "
            f"{r.get(M.speedup_per_mac_reduction(1), 1.0):.2f} | "
            f"{r.get(M.TOTAL_TRAIN_SECONDS, r[M.TRAIN_SECONDS]):.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmark.tools.compare",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--sparsity", type=float, default=0.5, help="target parameter pruning rate (default: 0.5)")
    parser.add_argument("--methods", default="all", help="comma-separated names, or 'all' (default)")
    parser.add_argument("--arch", default="resnet18", help="timm architecture (default: resnet18)")
    parser.add_argument("--dataset", default="digits", help="dataset (default: digits)")
    parser.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
    parser.add_argument("--epochs", type=int, default=12, help="training epochs (default: 12)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any config key, repeatable (`python -m benchmark config` lists them)",
    )
    parser.add_argument("--workers", type=int, default=None, help="parallel cells (default: one per core)")
    parser.add_argument("--no-track", action="store_true", help="do not log to MLflow")
    args = parser.parse_args(argv)
    try:
        discover()
        methods = METHODS.names() if args.methods == "all" else args.methods.split(",")
        for name in methods:
            METHODS.get(name)
        todo = cells(methods, args.sparsity, args.arch, args.dataset, args.seed, args.epochs, args.overrides)
        if args.workers is not None and args.workers < 1:
            raise UserError(f"--workers must be >= 1, got {args.workers}")
        run_study(
            "compare",
            todo,
            ExecutorSettings(workers=args.workers),
            tracking=TrackingSettings(enabled=not args.no_track),
            study_name="compare",
        )
        rows = [r for r in (read_json(c.out / METRICS_FILE) for c in todo) if r is not None]
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"\n{args.arch} on {args.dataset}, seed {args.seed}, {args.epochs} epochs, target sparsity {args.sparsity}\n")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
