"""The report's Results section: per (dataset, arch) one compact table per operating point, sorted by the
headline metric, best in bold, each row linked to its MLflow runs, and every number in a collapsible section."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

import pandas as pd

from benchmark.core import metrics as M
from benchmark.report.render import Block, Details, Heading, Link, Links, Strong, Table
from benchmark.report.stats import GroupSummary

RESULT_COLUMNS = [
    "method",
    "operating point",
    "granularity",
    "seeds finished",
    *(m.label for m in M.SUMMARY),
]


def _formatted(summary, metric: M.Metric) -> str:
    """A seed summary in the metric's own format and scale (`mean ± std [low, high]`)."""
    return summary.format(metric.fmt, scale=metric.scale)


def _detail_table(rows: list[GroupSummary]) -> Table:
    """Every method and operating point of one (dataset, arch): mean ± std [95% CI] over seeds, every metric."""
    table = [
        [
            g.method,
            g.operating_point,
            g.granularity or "-",
            f"{g.finished}/{g.cells}",
            *(_formatted(g.metrics[metric], metric) for metric in M.SUMMARY),
        ]
        for g in rows
    ]
    return Table(RESULT_COLUMNS, table)


# The compact tables: the headline metric first (rows sorted by it), then what it cost and gained.
HEADLINE = M.TOP1
COMPACT_METRICS = (M.TOP1, M.TOP1_DROP, M.PARAM_PRUNING_RATE, M.EFFECTIVE_MAC_REDUCTION, M.LATENCY_SPEEDUP_B1)
DEFAULT_TRACKING_URL = "http://127.0.0.1:5000"  # where `make ui` serves the MLflow UI


def _mean_ci(summary, metric: M.Metric) -> str:
    """`mean ± half the 95% interval` in the metric's format; the exact interval is in the details."""
    if summary.mean is None:
        return "-"
    mean = metric.fmt.format(summary.mean * metric.scale)
    if summary.half_width is None:
        return f"{mean} (n={summary.n})"
    return f"{mean} ± {metric.fmt.format(summary.half_width * metric.scale)}"


@dataclass
class _RowInfo:
    """What results.csv says about one (dataset, arch, method, operating point) beyond its statistics."""

    table: str  # the operating point table it belongs to
    runs: list[tuple[int, str]]  # (seed, MLflow run id) of its cells


def _point_table(row: pd.Series) -> str:
    """Which compact table a cell's row goes to: its EDropout point (EDropout, its controls and the baselines
    matched to it), its target rate, or its own rate; '' for the dense reference (in every table)."""
    point, control_of = (_text(row.get(c)) for c in ("edropout_point", "control_of"))
    op, method = str(row["operating_point"]), str(row["method"])
    if method == "dense" or op == "dense":
        return ""
    if point or op.startswith("matched") or "edropout" in (method, control_of):
        return f"at EDropout's rate ({point})" if point else "at EDropout's rate"
    try:
        return f"target rate {float(op):g}"
    except ValueError:
        return "own rate"


def _text(value) -> str:
    """A text column's value, '' for a blank (NaN) cell."""
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def row_info(cells: pd.DataFrame) -> dict[tuple[str, str, str, str], _RowInfo]:
    out: dict[tuple[str, str, str, str], _RowInfo] = {}
    for _, row in cells.iterrows():
        key = (row["dataset"], row["arch"], row["method"], row["operating_point"])
        info = out.setdefault(key, _RowInfo(_point_table(row), []))
        run_id = row.get("mlflow_run_id")
        if isinstance(run_id, str) and run_id.strip() and row["status"] == "finished":
            info.runs.append((int(row["seed"]), run_id.strip()))
    return out


def _run_links(info: _RowInfo | None, tracking_url: str) -> Links | str:
    if info is None or not info.runs:
        return "-"
    base = tracking_url.rstrip("/")
    return Links([Link(f"s{seed}", f"{base}/#/runs/{run_id}") for seed, run_id in sorted(info.runs)])


def _table_order(name: str) -> tuple:
    """EDropout's points first (the paper's comparison), then target rates ascending, then own rates."""
    if name.startswith("at EDropout"):
        return (0, name)
    if name.startswith("target rate"):
        return (1, float(name.split()[-1]))
    return (2, name)


def _compact_table(rows: list[GroupSummary], dense: list[GroupSummary], infos, tracking_url: str) -> Table:
    """One operating point: rows sorted by the headline metric (best first), the best value of each column in
    bold (the dense reference, last, is not ranked), mean ± half the 95% interval."""

    def mean(g: GroupSummary) -> float:
        value = g.metrics[HEADLINE].mean
        return -math.inf if value is None else value

    ranked = sorted(rows, key=mean, reverse=HEADLINE.higher_is_better is not False)
    best = {}
    for metric in COMPACT_METRICS:
        values = [g.metrics[metric].mean for g in ranked if g.metrics[metric].mean is not None]
        if values and metric.higher_is_better is not None and len(ranked) > 1:
            best[metric] = max(values) if metric.higher_is_better else min(values)
    table = []
    for g in ranked + dense:
        cells: list = [g.method if g not in dense else "dense (reference)", f"{g.finished}/{g.cells}"]
        for metric in COMPACT_METRICS:
            text = _mean_ci(g.metrics[metric], metric)
            top = g not in dense and metric in best and g.metrics[metric].mean == best[metric]
            cells.append(Strong(text) if top else text)
        cells.append(_run_links(infos.get(g.key), tracking_url))
        table.append(cells)
    columns = ["method", "seeds", *(f"{m.label} ±95% CI" if m is HEADLINE else m.label for m in COMPACT_METRICS)]
    return Table([*columns, "MLflow runs"], table)


def results_tables(
    groups: list[GroupSummary], cells: pd.DataFrame | None = None, tracking_url: str = DEFAULT_TRACKING_URL
) -> list[Block]:
    """Per (dataset, arch): one compact table per operating point (sorted by top-1, best in bold, each row
    linked to its MLflow runs), then every number, mean ± std [95% CI], in a collapsible section."""
    infos = row_info(cells) if cells is not None and not cells.empty else {}
    by_pair: dict[tuple[str, str], list[GroupSummary]] = defaultdict(list)
    for group in groups:
        by_pair[(group.dataset, group.arch)].append(group)
    blocks: list[Block] = []
    for (dataset, arch), rows in sorted(by_pair.items()):
        blocks.append(Heading(f"{dataset} / {arch}", 3))
        dense = [g for g in rows if g.method == "dense"]
        tables: dict[str, list[GroupSummary]] = defaultdict(list)
        for g in rows:
            if g not in dense:
                info = infos.get(g.key)
                tables[info.table if info else g.operating_point].append(g)
        for name in sorted(tables, key=_table_order):
            blocks += [
                Heading(f"{dataset} / {arch}: {name}", 4),
                _compact_table(tables[name], dense, infos, tracking_url),
            ]
        if not tables and dense:
            blocks.append(_compact_table([], dense, infos, tracking_url))
        blocks.append(Details(f"Every number for {dataset} / {arch} (mean ± std [95% CI])", [_detail_table(rows)]))
    return blocks
