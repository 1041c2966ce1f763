"""Command line: `python -m benchmark run ...` and `python -m benchmark list methods|archs|datasets`."""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import sys
from pathlib import Path

from benchmark.core.config import RunConfig, apply_mapping, load_yaml, parse_assignment, set_value
from benchmark.core.errors import CellFailed, UserError, unknown_choice

LIST_KINDS = ("methods", "archs", "datasets")


class _Parser(argparse.ArgumentParser):
    """argparse, but errors are one line and exit with code 2 like every other bad input."""

    def error(self, message: str):  # noqa: D401 - argparse API
        print(f"error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        raise SystemExit(2)


def _cell_options() -> argparse.ArgumentParser:
    """The options that describe a cell, shared by `run` and `config`."""
    opts = argparse.ArgumentParser(add_help=False)
    opts.add_argument("--method", help="pruning method (default: dense)")
    opts.add_argument("--arch", help="timm architecture (default: resnet18)")
    opts.add_argument("--dataset", help="dataset (default: digits)")
    opts.add_argument("--seed", type=int, help="seed (default: 0)")
    opts.add_argument("--epochs", type=int, help="training epochs (train.epochs)")
    opts.add_argument("--batch-size", type=int, help="mini-batch size (train.batch_size)")
    opts.add_argument(
        "--sparsity",
        help="target parameter pruning rate in [0, 1), or 'matched' "
        "(EDropout's rate for the same cell) (method_args.sparsity)",
    )
    opts.add_argument("--data-root", help="folder with dataset files (data.root)")
    opts.add_argument("--download", action="store_true", help="download torchvision datasets if missing")
    opts.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="FILE",
        help="YAML file of config keys, applied before --set (repeatable)",
    )
    opts.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config key, e.g. --set train.lr=0.1 (repeatable)",
    )
    return opts


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m benchmark", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    cell = _cell_options()

    run = sub.add_parser(
        "run", parents=[cell], help="run one cell (method x arch x dataset x seed) and write metrics.json"
    )
    run.add_argument("--out", required=True, help="output folder for metrics.json and config.json")
    run.add_argument(
        "--save-model",
        action="store_true",
        help="also write the final network to OUT/model.pt and log it to MLflow as a model with its signature",
    )
    run.add_argument("--no-track", action="store_true", help="do not log to MLflow")
    run.add_argument("--system-metrics", action="store_true", help="log MLflow system metrics (CPU, memory) every 10 s")
    run.add_argument("--experiment", default=None, help="MLflow experiment name (default: pruning-benchmark)")
    run.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")
    run.add_argument(
        "--time-limit",
        type=float,
        metavar="SECONDS",
        help="stop the cell after SECONDS and record it FAILED 'timed out after N s' (as executor.cell_timeout)",
    )

    lst = sub.add_parser("list", help="list registered methods, timm architectures or datasets")
    lst.add_argument("kind", help=f"one of {', '.join(LIST_KINDS)}")
    lst.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'resnet*'")

    sub.add_parser(
        "config", parents=[cell], help="print the fully resolved config of a cell and its hash as JSON (runs nothing)"
    )
    for name, (_module, text) in _tools().items():  # their own options: `python -m benchmark NAME --help`
        sub.add_parser(name, help=text, add_help=False)
    return parser


# Subcommands whose module has its own parser: `python -m benchmark NAME ARGS` is `python -m MODULE ARGS`.
# A new tool is one line here (a module with `main(argv) -> int`).
TOOLS: dict[str, tuple[str, str]] = {
    "compare": ("benchmark.tools.compare", "run every method at one operating point and print them side by side"),
    "controls": ("benchmark.tools.controls", "EDropout against its controls over five seeds (profile 'controls')"),
    "bench-table": ("benchmark.tools.bench_table", "the performance table of the latest `make bench` run"),
    "families": ("benchmark.tools.families", "one epoch of EDropout on one arch per timm family"),
    "energy-agreement": ("benchmark.tools.energy_agreement", "how well EDropout's energy ranks states"),
    "plan": ("benchmark.study.plan", "a profile's cells, datasets to pull and estimated time, before it runs"),
}


def _tools() -> dict[str, tuple[str, str]]:
    """The tools whose module is there (one may be retired without breaking the others)."""
    import importlib.util

    return {name: tool for name, tool in TOOLS.items() if importlib.util.find_spec(tool[0]) is not None}


def _run_tool(name: str, argv: list[str]) -> int:
    import importlib

    module, _ = TOOLS[name]
    return importlib.import_module(module).main(argv) or 0


def config_from_args(args: argparse.Namespace) -> RunConfig:
    cfg = RunConfig()
    for path in args.config:
        apply_mapping(cfg, load_yaml(path), path)
    shortcuts = {
        "method": args.method,
        "model.arch": args.arch,
        "data.name": args.dataset,
        "seed": args.seed,
        "train.epochs": args.epochs,
        "train.batch_size": args.batch_size,
        "data.root": args.data_root,
    }
    for key, value in shortcuts.items():
        if value is not None:
            set_value(cfg, key, value)
    if args.sparsity is not None:
        try:
            cfg.method_args["sparsity"] = args.sparsity if args.sparsity == "matched" else float(args.sparsity)
        except ValueError:
            raise UserError(
                f"bad value for --sparsity: {args.sparsity!r}; give a rate in [0, 1) or 'matched'"
            ) from None
    if args.download:
        cfg.data.download = True
    for text in args.overrides:
        set_value(cfg, *parse_assignment(text))
    return cfg


def _warn_broken_plugins() -> None:
    """One stderr line per plugin that failed to load; the run goes on with the healthy methods."""
    from benchmark.cell.plugins import broken_warnings

    for line in broken_warnings():
        print(line, file=sys.stderr)


def cmd_run(args: argparse.Namespace) -> int:
    from benchmark.cell.runner import identify, run_cell
    from benchmark.core.tracking import TrackingSettings
    from benchmark.study.backends import time_limit

    cfg = config_from_args(args)
    identify(cfg)  # bad input stays one `error:` line, so the warnings come after the checks
    if args.time_limit is not None and not 0 < args.time_limit < float("inf"):
        raise UserError(f"bad value for --time-limit: {args.time_limit!r}; give a number of seconds > 0")
    _warn_broken_plugins()
    tracking = TrackingSettings(
        enabled=not args.no_track, log_model=args.save_model, system_metrics=args.system_metrics
    )
    if args.experiment:
        tracking.experiment = args.experiment
    if tracking.enabled and args.time_limit:  # the store is made before the timer starts, as a study does
        from benchmark.core.tracking import default_tracking_uri, ensure_experiment

        ensure_experiment(tracking.uri or default_tracking_uri(), tracking.experiment)
    out = Path(args.out)
    created = not out.exists()
    try:
        with time_limit(args.time_limit):  # the study's per-cell timer: raises TimedOut, a CellFailed
            metrics = run_cell(cfg, out, tracking=tracking, progress=not args.quiet, save_model=args.save_model)
    except BaseException:
        if created and out.is_dir():  # a failed run leaves nothing behind (its MLflow run says why it failed)
            import shutil

            shutil.rmtree(out, ignore_errors=True)
        raise
    summary = {
        k: metrics[k]
        for k in (
            "method",
            "arch",
            "dataset",
            "seed",
            "top1",
            "top5",
            "params",
            "macs",
            "latency_ms_b1",
            "train_seconds",
            "config_hash",
        )
        if k in metrics
    }
    print(json.dumps(summary))
    print(f"result: {out}", file=sys.stderr)
    if metrics.get("mlflow_run_id"):
        from benchmark.core.tracking import run_url

        print(f"MLflow run: {run_url(tracking, metrics['mlflow_run_id'])}", file=sys.stderr)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    if args.kind not in LIST_KINDS:
        raise unknown_choice("list kind", args.kind, LIST_KINDS)
    if args.kind == "methods":
        from benchmark.cell.plugins import BROKEN, METHODS, discover

        discover()
        print(f"{'METHOD':22s} {'GRANULARITY':13s} {'SCHEDULE':16s} {'RATE':12s} {'TAGS':15s} CITATION")
        for name in METHODS.names():
            if fnmatch.fnmatch(name, args.pattern):
                spec = METHODS.get(name)
                rate = "target rate" if spec.takes_sparsity else "own rate"
                tags = ",".join(sorted(spec.tags | ({"needs-bn"} if spec.needs_batchnorm else set()))) or "-"
                print(f"{name:22s} {spec.granularity:13s} {spec.schedule:16s} {rate:12s} {tags:15s} {spec.citation}")
        for where, problem in sorted(BROKEN.items()):
            print(f"{'BROKEN':22s} {where}: {problem}")
    elif args.kind == "archs":
        from benchmark.cell.models import available_archs

        for name in fnmatch.filter(available_archs(), args.pattern):
            print(name)
    else:
        from benchmark.cell.data import DATASETS

        print(f"{'DATASET':14s} DESCRIPTION")
        for name in DATASETS.names():
            if fnmatch.fnmatch(name, args.pattern):
                print(f"{name:14s} {DATASETS.get(name).description}")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    from benchmark.cell.runner import identify

    cell = identify(config_from_args(args))
    _warn_broken_plugins()
    print(json.dumps({"config": cell.config.to_dict(), "config_hash": cell.config_hash}, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    tool = argv[0] if argv and argv[0] in _tools() else None
    args = None if tool else build_parser().parse_args(argv)
    try:
        if tool:
            code = _run_tool(tool, argv[1:])
        else:
            code = {"run": cmd_run, "list": cmd_list, "config": cmd_config}[args.command](args)
        sys.stdout.flush()  # a reader that left early shows here, where it is handled below
        return code
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except CellFailed as exc:  # recorded as a FAILED MLflow run; no metrics.json was written
        print(f"error: the cell failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `list methods | head`: the reader left early; no traceback for that
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit flush cannot fail again
        return 1
