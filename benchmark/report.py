"""Reporting: collect cell results and write the comparison table."""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from pathlib import Path

COLUMNS = [
    ("top1", "top-1 %", "{:.2f}"),
    ("top5", "top-5 %", "{:.2f}"),
    ("params", "params (M)", "{:.3f}", 1e-6),
    ("macs", "MACs (M)", "{:.2f}", 1e-6),
    ("latency_ms_b1", "latency b1 (ms)", "{:.2f}"),
    ("latency_ms_b64", "latency b64 (ms)", "{:.1f}"),
    ("train_seconds", "train (s)", "{:.0f}"),
]


def collect(paths: list[Path]) -> tuple[list[dict], list[Path]]:
    """Read every metrics.json that exists; return the results and the paths that are missing."""
    rows, missing = [], []
    for path in paths:
        try:
            rows.append(json.loads(Path(path).read_text()))
        except (OSError, ValueError):
            missing.append(Path(path))
    return rows, missing


def _cell(values: list[float], fmt: str, scale: float) -> str:
    values = [v * scale for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not values:
        return "-"
    if len(set(values)) == 1:  # one seed, or a quantity that does not vary (parameter counts)
        return fmt.format(values[0])
    return f"{fmt.format(statistics.mean(values))} ± {fmt.format(statistics.stdev(values))}"


def results_table(rows: list[dict]) -> str:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        groups[(row["dataset"], row["arch"], row["method"])].append(row)
    header = ["dataset", "arch", "method", "seeds"] + [c[1] for c in COLUMNS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for (dataset, arch, method), group in sorted(groups.items()):
        cells = [dataset, arch, method, str(len(group))]
        for column in COLUMNS:
            key, _, fmt = column[:3]
            scale = column[3] if len(column) > 3 else 1.0
            cells.append(_cell([r.get(key) for r in group], fmt, scale))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_results_md(rows: list[dict], missing: list[Path], path: Path, title: str) -> None:
    parts = [f"# {title}", "",
             "Mean ± sample standard deviation over seeds; top-k on the held-out test split (eval mode); "
             "latency is the median CPU forward time.", ""]
    parts.append(results_table(rows) if rows else "No finished cells yet.")
    if missing:
        parts += ["", f"Missing results ({len(missing)}):", ""] + [f"- `{p}`" for p in missing]
    if rows:
        machine = rows[0].get("versions", {})
        parts += ["", f"torch {machine.get('torch')}, timm {machine.get('timm')}, "
                      f"{rows[0].get('latency_threads')} CPU threads for latency."]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(parts) + "\n")
    tmp.replace(path)
