"""The README's performance table from the latest saved `make bench` run (pytest-benchmark JSON).

    python -m benchmark.tools.bench_table                      # print the table of the newest .benchmarks/*/*.json
    python -m benchmark.tools.bench_table --json FILE          # of that run
    python -m benchmark.tools.bench_table --write README.md    # also replace the table between its markers

One row per benchmark: its group, best and median time, and the ratio its group checks (with the floor
and the issue's target), under a line naming the machine, torch threads, versions and the run's date.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from benchmark.core.errors import UserError

START, END = "<!-- bench-table:start -->", "<!-- bench-table:end -->"
RATIOS = ("ratio", "whole_training_ratio", "growth")


def latest_run(storage: Path = Path(".benchmarks")) -> Path:
    runs = sorted(storage.glob("*/*.json"), key=lambda p: p.name)
    if not runs:
        raise UserError(f"no saved benchmark run under {storage}/: run `make bench` first")
    return runs[-1]


def _seconds(value: float) -> str:
    return f"{value:.2f} s" if value >= 1 else f"{value * 1e3:.1f} ms"


def _ratio(info: dict) -> str:
    parts = []
    for label in RATIOS:
        if info.get(label) is not None:
            sign = ">=" if info.get(f"{label}_kind") == "speedup" else "<="
            parts.append(f"{label.replace('_', ' ')} {info[label]:.2f}x (floor {sign} {info[f'{label}_floor']:g})")
    if "overhead_seconds" in info:
        parts.append(f"overhead outside training {info['overhead_seconds']:.2f} s (target <= 1 s)")
    if "seconds_per_1000_cells" in info:
        phases = ", ".join(f"{p} {info[f'{p}_seconds']:.1f} s" for p in ("plan", "aggregate", "report"))
        parts.append(f"{info['cells']:,} cells: {phases}")
    return "; ".join(parts) or "-"


def table(run: dict) -> str:
    benches = run.get("benchmarks")
    if not isinstance(benches, list) or not benches:
        raise UserError("the benchmark JSON holds no benchmarks")
    info = benches[0].get("extra_info", {})
    header = (
        f"`make bench` of {run.get('datetime', '?')[:10]} on {info.get('cpu', '?')}, {info.get('cores', '?')} cores, "
        f"{info.get('torch_threads', '?')} torch thread(s); torch {info.get('torch', '?')}, "
        f"timm {info.get('timm', '?')}, Python {info.get('python', '?')}."
    )
    rows = ["| group | benchmark | best | median | ratio or figure checked |", "|---|---|---|---|---|"]
    for bench in sorted(benches, key=lambda b: (b["group"] or "", b["name"])):
        stats = bench["stats"]
        rows.append(
            f"| {bench['group']} | {bench['name'].removeprefix('test_')} | {_seconds(stats['min'])} | "
            f"{_seconds(stats['median'])} | {_ratio(bench.get('extra_info', {}))} |"
        )
    return header + "\n\n" + "\n".join(rows) + "\n"


def write_into(readme: Path, text: str) -> None:
    content = readme.read_text()
    if START not in content or END not in content:
        raise UserError(f"{readme} has no {START} ... {END} markers to put the table between")
    head, rest = content.split(START, 1)
    readme.write_text(head + START + "\n" + text + END + rest.split(END, 1)[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmark.tools.bench_table",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--json", type=Path, help="a saved run (default: the newest under .benchmarks/)")
    parser.add_argument("--write", type=Path, help="a markdown file whose table between the markers is replaced")
    args = parser.parse_args(argv)
    try:
        path = args.json or latest_run()
        try:
            run = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise UserError(f"cannot read benchmark JSON {path}: {exc}") from None
        text = table(run)
        if args.write:
            write_into(args.write, text)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
