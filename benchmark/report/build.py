"""The reproduction report: from the study's table of cells (`reports/results.csv`) to what a researcher reads.

`build_report` computes everything first (statistics, claims, checklist, figures), builds the report as data
(a list of blocks) and renders it twice, as markdown and as one self-contained HTML file. Every output is
written into a staging folder and moved into place at the end, so a crash never leaves half a report.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from benchmark.core import metrics as M
from benchmark.core.paths import PROJECT_ROOT
from benchmark.report.checklist import checklist
from benchmark.report.claims import CLAIMS_PATH, ClaimResult, check_claims, load_claims
from benchmark.report.claims_section import claims_blocks, verdict_counts
from benchmark.report.comparisons import comparisons_blocks
from benchmark.report.controls import controls_blocks
from benchmark.report.coverage import coverage_blocks, latency_blocks, status_note_blocks
from benchmark.report.inference import HOLM_NAME, INTERVAL_NAME, MDE_NAME
from benchmark.report.render import Block, Bullets, Heading, Image, Table, Text, render_html, render_markdown
from benchmark.report.stats import (
    CONFIDENCE,
    TTEST_NAME,
    GroupSummary,
    derive,
    group_summaries,
    paired_tests,
    paper_point,
)
from benchmark.report.table import STATUSES, load_results, with_config_fields
from benchmark.report.verdict import verdict_blocks

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


# --- content -------------------------------------------------------------------------------------------------


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


def results_tables(groups: list[GroupSummary]) -> list[Block]:
    """One table per (dataset, arch): every method and operating point, mean ± std [95% CI] over seeds."""
    by_pair: dict[tuple[str, str], list[GroupSummary]] = defaultdict(list)
    for group in groups:
        by_pair[(group.dataset, group.arch)].append(group)
    blocks: list[Block] = []
    for (dataset, arch), rows in sorted(by_pair.items()):
        table = []
        for g in rows:
            m = g.metrics
            table.append(
                [
                    g.method,
                    g.operating_point,
                    g.granularity or "-",
                    f"{g.finished}/{g.cells}",
                    *(_formatted(m[metric], metric) for metric in M.SUMMARY),
                ]
            )
        blocks += [Heading(f"{dataset} / {arch}", 3), Table(RESULT_COLUMNS, table)]
    return blocks


def _short(error: str, limit: int = 400) -> str:
    error = " ".join(str(error).split())
    return error if len(error) <= limit else error[:limit] + " ... (truncated)"


def _problems(cells: pd.DataFrame) -> list[Block]:
    bad = cells[cells["status"] != "finished"].sort_values(["status", "cell"])
    if cells.empty:
        return [Text("No cells in results.csv.")]
    if bad.empty:
        return [Text(f"None: all {len(cells)} expected cells finished.")]
    rows = [
        [
            r["cell"],
            r["status"],
            _short(r["error"])
            or (
                "not run yet, or stopped before it wrote a result" if r["status"] == "missing" else "no error recorded"
            ),
        ]
        for _, r in bad.iterrows()
    ]
    return [
        Text(
            f"{len(bad)} of {len(cells)} expected cells did not finish; their results are left out of every "
            "summary above."
        ),
        Table(["cell", "status", "error"], rows),
    ]


def _method_notes() -> list[str]:
    level = round(100 * CONFIDENCE)
    return [
        (
            f"Cells: mean ± sample standard deviation over seeds, then the {level}% interval of the mean: "
            f"{INTERVAL_NAME} (n-1 degrees of freedom; accuracies [0, 100], rates [0, 1], ratios >= 0). The true "
            "mean lies in that range, so cutting the interval back to it never lowers its coverage. A percentile "
            "bootstrap over seeds would stay in range too, but lies inside the seeds' own range, which at 3 seeds "
            "holds the true mean only 75% of the time. One seed gives no interval. Only finished cells count."
        ),
        (
            "Drops are paired by seed: dense top-k minus the cell's top-k on the same dataset, architecture and seed, "
            "in percentage points; a seed whose dense cell did not finish has no drop."
        ),
        (
            "MAC reduction: dense MACs / MACs of the physically pruned network; for unstructured methods (same shapes) "
            "dense MACs / non-zero MACs, a theoretical gain. Speed-up: measured CPU latency at batch 1, dense / pruned."
        ),
        (
            "Train cost: seconds of training in the cell including the dense training a post-training method started "
            "from (total_train_seconds), else train_seconds."
        ),
        (
            "Paper's R (paper_r_percent): the authors' kept_counter, measured on the final network: conv filters "
            "whose weights are not all zero times k^2, plus classifier inputs not all zero times the classes (other "
            "linear layers: outputs not all zero), over the same count of the dense cell of the same dataset, arch "
            "and seed; input channels are ignored. It is close to the share of units kept, not of parameters; "
            "unstructured pruning keeps nearly every unit, so its R is near 100%."
        ),
        (
            f"Paired comparisons: each baseline at the 'matched' operating point (EDropout's rate on the same "
            f"dataset, arch and seed) minus EDropout's own cell, paired by seed: mean, {level}% CI and p from "
            f"{TTEST_NAME}; p-values Holm-adjusted per family (every baseline on one dataset, arch and metric; "
            f"EDropout's controls form their own family), {HOLM_NAME}; the minimum detectable difference (MDE) at "
            f"the study's number of pairs and the observed SD of the differences, {MDE_NAME}. n/a with fewer "
            "than 2 pairs or when the differences do not vary."
        ),
    ]


def _metrics_summary(groups: list[GroupSummary], cells: pd.DataFrame, claims: list[ClaimResult]) -> dict:
    """Small nested summary for `dvc metrics show`: dataset -> arch -> method@point -> means."""
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


def _tradeoff(cells: pd.DataFrame) -> pd.DataFrame:
    done = cells[cells["status"] == "finished"].copy()
    done[M.MAC_REDUCTION] = done[M.EFFECTIVE_MAC_REDUCTION]  # non-zero MACs for unstructured methods
    return done.reindex(columns=TRADEOFF_COLUMNS).sort_values(["dataset", "arch", "method", "operating_point", "seed"])


# --- building ------------------------------------------------------------------------------------------------


@dataclass
class ReportSummary:
    """What `build_report` wrote and the headline counts."""

    out_dir: Path
    cells: int
    finished: int
    failed: int
    missing: int
    claims: dict[str, int]
    checklist_met: int
    checklist_items: int
    figures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _publish(staging: Path, out_dir: Path, files: list[str]) -> None:
    """Move the staged outputs into `out_dir`; the figures folder is replaced as a whole (no stale figures)."""
    for name in files:
        (out_dir / name).parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / name, out_dir / name)
    old = out_dir / "figures"
    if old.exists():
        os.replace(old, staging / "old-figures")
    os.replace(staging / "figures", old)


def _overview(cells: pd.DataFrame, counts: dict[str, int]) -> Text:
    if cells.empty:
        return Text(
            "No results: results.csv lists no cells. Run the study (`make study`) so the aggregate "
            "stage has cells to list; every claim below is 'not run'."
        )
    return Text(
        f"{len(cells)} expected cells: {counts['finished']} finished, {counts['failed']} failed, "
        f"{counts['missing']} missing. Datasets: {', '.join(sorted(set(cells['dataset'])))}; "
        f"architectures: {', '.join(sorted(set(cells['arch'])))}; methods: "
        f"{', '.join(sorted(set(cells['method'])))}; seeds: "
        f"{', '.join(map(str, sorted(set(cells['seed']))))}."
    )


def _point_note(cells: pd.DataFrame) -> list[Block]:
    """With several EDropout operating points, which one the claims are checked at."""
    _, point = paper_point(cells)
    if not point:
        return []
    return [Text(f"The study ran several EDropout operating points; the claims are checked at {point} (the paper's).")]


def _blocks(cells, counts, claim_results, items, results: list[Block], tests, figures) -> list[Block]:
    """The report's content, in reading order."""
    blocks: list[Block] = [
        _overview(cells, counts),
        Heading("Claims of the paper"),
        *_point_note(cells),
        *claims_blocks(claim_results),
        Heading("Reporting checklist (Blalock et al. 2020)"),
        Table(["item", "status", "detail"], [[i.item, "met" if i.met else "not met", i.detail] for i in items]),
        Heading("Results"),
        *(results or [Text("No cells to summarise.")]),
        Heading("Baselines against EDropout at its rate"),
        *comparisons_blocks(tests),
        Heading("EDropout against its controls"),
        *controls_blocks(cells),
        Heading("What EDropout could prune (coverage per architecture)"),
        *coverage_blocks(cells),
        Heading("Cells with status notes"),
        *status_note_blocks(cells),
        Heading("Latency measurements"),
        *latency_blocks(cells),
        Heading("Figures"),
        *([Image(f.name, f.title, f.caption) for f in figures.figures] or [Text("No figures: no data to plot.")]),
    ]
    if figures.notes:
        blocks += [Text("Not drawn or left out:"), Bullets(figures.notes)]
    return blocks + [
        Heading("Missing and failed cells"),
        *_problems(cells),
        Heading("How the numbers are computed"),
        Bullets(_method_notes()),
    ]


def build_report(
    results_csv: Path, out_dir: Path, title: str, root: Path | None = None, claims_file: Path = CLAIMS_PATH
) -> ReportSummary:
    """Write report.md, report.html, figures/*.png, metrics.json and plots/tradeoff.csv into `out_dir`.

    `root` resolves each cell's `result_dir` (default: the project root); `claims_file` lists the paper's claims.
    """
    from benchmark.report.figures import make_figures

    out_dir, root = Path(out_dir), Path(root) if root is not None else PROJECT_ROOT
    claims = load_claims(claims_file)
    fields = sorted({field for claim in claims for field, _ in claim.setting})
    cells = with_config_fields(derive(load_results(results_csv)), fields, root)
    groups = group_summaries(cells)
    tests = paired_tests(cells)
    claim_results = check_claims(cells, claims)
    items = checklist(cells)

    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".report-", dir=out_dir))
    try:
        (staging / "figures").mkdir()
        figures = make_figures(cells, groups, staging / "figures", root)
        counts = {s: int((cells["status"] == s).sum()) for s in STATUSES}
        blocks = _blocks(cells, counts, claim_results, items, results_tables(groups), tests, figures)
        verdict, drawn = verdict_blocks(cells, staging / "figures", root, claims)
        blocks[1:1] = verdict  # the verdict opens the report: after the overview, before the claims
        figures.figures[:0] = drawn  # first in the page and in the summary

        images = {f.name: (staging / "figures" / f.name).read_bytes() for f in figures.figures}
        _write(staging / "report.md", render_markdown(title, blocks))
        _write(staging / "report.html", render_html(title, blocks, images))
        _write(staging / "metrics.json", json.dumps(_metrics_summary(groups, cells, claim_results), indent=2) + "\n")
        (staging / "plots").mkdir()
        _tradeoff(cells).to_csv(staging / "plots" / "tradeoff.csv", index=False, float_format="%.6g")
        _publish(staging, out_dir, ["plots/tradeoff.csv", "metrics.json", "report.html", "report.md"])
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ReportSummary(
        out_dir=out_dir,
        cells=len(cells),
        finished=counts["finished"],
        failed=counts["failed"],
        missing=counts["missing"],
        claims=verdict_counts(claim_results),
        checklist_met=sum(i.met for i in items),
        checklist_items=len(items),
        figures=[f.name for f in figures.figures],
        notes=figures.notes,
    )
