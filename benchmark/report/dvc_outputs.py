"""What the report stage writes besides the report, for DVC and for machines: the nested summary
(reports/metrics.json), the flat files `dvc metrics show` prints as one table (reports/metrics/), and the data
`dvc plots show` draws one series per method from (reports/plots/)."""

from __future__ import annotations

import re

import pandas as pd

from benchmark.core import metrics as M
from benchmark.report.claims import ClaimResult
from benchmark.report.claims_section import verdict_counts
from benchmark.report.results_section import HEADLINE, row_info
from benchmark.report.stats import GroupSummary
from benchmark.report.table import STATUSES

TRADEOFF_COLUMNS = [
    "method",
    "arch",
    "dataset",
    "seed",
    "operating_point",
    M.PARAM_PRUNING_RATE,
    M.TOP1,
    M.TOP1_DROP,
    M.MAC_REDUCTION,
    M.LATENCY_SPEEDUP_B1,
]
METRICS_SUMMARY = [M.TOP1, M.TOP1_DROP, M.PARAM_PRUNING_RATE, M.LATENCY_SPEEDUP_B1]


def metrics_summary(groups: list[GroupSummary], cells: pd.DataFrame, claims: list[ClaimResult]) -> dict:
    """The full nested summary (reports/metrics.json, an MLflow artifact of the study's run): cell counts,
    claim verdicts and dataset -> arch -> method@point -> means."""
    out: dict = {
        "cells": {s: int((cells["status"] == s).sum()) for s in STATUSES},
        "claims": {re.sub(r"\W+", "_", v).strip("_"): n for v, n in verdict_counts(claims).items()},
    }
    for g in groups:
        entry = {"seeds": g.metrics[M.TOP1].n}
        for metric in METRICS_SUMMARY:
            mean = g.metrics[metric].mean
            if mean is not None:
                entry[metric] = round(mean, 6)
        out.setdefault(g.dataset, {}).setdefault(g.arch, {})[f"{g.method}@{g.operating_point}"] = entry
    return out


def _metric_key(table: str, operating_point: str) -> str:
    """The short column name of an operating point in `dvc metrics show`: the target rate ('0.5'), 'matched'
    or 'matched@<EDropout point>' (EDropout, its controls and the baselines matched to it), 'dense', else the
    point itself."""
    if not table:
        return "dense"
    if table.startswith("target rate "):
        return table.removeprefix("target rate ")
    if table.startswith("at EDropout's rate"):
        point = table.removeprefix("at EDropout's rate").strip(" ()")
        return f"matched@{point}" if point else "matched"
    return operating_point


def dvc_metrics(groups: list[GroupSummary], cells: pd.DataFrame) -> dict[str, dict]:
    """The flat files `dvc metrics show` prints as one compact table (reports/metrics/): one file per (dataset,
    arch, method), `<dataset>/<arch>/<method>.json`, holding the headline metric's mean over finished seeds at
    each operating point (keys from `_metric_key`, shared by every method, so they form the table's columns),
    plus `cells.json` with the counts of finished, failed and missing cells."""
    infos = row_info(cells) if not cells.empty else {}
    files: dict[str, dict] = {"cells.json": {s: int((cells["status"] == s).sum()) for s in STATUSES}}
    for g in groups:
        mean = g.metrics[HEADLINE].mean
        if mean is None:
            continue
        info = infos.get(g.key)
        key = _metric_key(info.table if info else "", g.operating_point) if g.method != "dense" else "dense"
        files.setdefault(f"{g.dataset}/{g.arch}/{g.method}.json", {})[key] = round(mean, 2)
    return files


def tradeoff(cells: pd.DataFrame) -> pd.DataFrame:
    done = cells[cells["status"] == "finished"].copy()
    done[M.MAC_REDUCTION] = done[M.EFFECTIVE_MAC_REDUCTION]  # non-zero MACs for unstructured methods
    return done.reindex(columns=TRADEOFF_COLUMNS).sort_values(["dataset", "arch", "method", "operating_point", "seed"])


def dvc_method_points(cells: pd.DataFrame) -> list[dict]:
    """reports/plots/methods.json, what `dvc plots show` draws one line per method from (the `by_method`
    template colours by `method`): per (dataset, arch, method, operating point) the seed means of the
    trade-off columns."""
    table = tradeoff(cells)
    keys = ["dataset", "arch", "method", "operating_point"]
    values = [c for c in TRADEOFF_COLUMNS if c not in (*keys, "seed")]
    means = table.groupby(keys, sort=True)[values].mean().reset_index()
    seeds = table.groupby(keys, sort=True)["seed"].nunique().reset_index(drop=True)
    rows = []
    for (_, row), n in zip(means.iterrows(), seeds, strict=True):
        numbers = {c: round(float(row[c]), 6) for c in values if pd.notna(row[c])}
        rows.append({**{k: str(row[k]) for k in keys}, "seeds": int(n), **numbers})
    return rows
