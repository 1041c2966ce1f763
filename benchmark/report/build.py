"""The reproduction report: from the study's table of cells (`reports/results.csv`) to what a researcher reads.

`build_report` computes everything first (statistics, claims, checklist, figures), builds the report as data
(a list of blocks) and renders it twice, as markdown and as one self-contained HTML file. Every output is
written into a staging folder and moved into place at the end, so a crash never leaves half a report.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from benchmark.core import metrics as M
from benchmark.core.paths import PROJECT_ROOT
from benchmark.report.checklist import checklist
from benchmark.report.claims import (
    CLAIMS_PATH,
    NOT_REPRODUCED,
    NOT_RUN,
    REPRODUCED,
    ClaimResult,
    check_claims,
    load_claims,
)
from benchmark.report.controls import controls_blocks
from benchmark.report.render import Block, Bullets, Heading, Image, Table, Text, render_html, render_markdown
from benchmark.report.stats import (
    CONFIDENCE,
    MATCHED,
    TTEST_NAME,
    GroupSummary,
    PairedTest,
    derive,
    group_summaries,
    paired_tests,
)
from benchmark.report.table import STATUSES, load_results

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


def _paired_cells(group: GroupSummary, tests: dict[tuple[str, str, str], PairedTest]) -> list[str]:
    test = tests.get((group.dataset, group.arch, group.method))
    if group.operating_point != MATCHED or test is None:
        return ["-", "-"]
    detail = f"{test.test}, {test.n_pairs} pair{'s' if test.n_pairs != 1 else ''}"
    if test.mean_difference is not None:
        detail += f", mean diff {test.mean_difference:+.2f} pp (baseline - EDropout)"
    return [detail, test.format_p()]


RESULT_COLUMNS = [
    "method",
    "operating point",
    "granularity",
    "seeds finished",
    *(m.label for m in M.SUMMARY),
    "paired test vs EDropout (top-1)",
    "p-value",
]


def _formatted(summary, metric: M.Metric) -> str:
    """A seed summary in the metric's own format and scale (`mean ± std [low, high]`)."""
    return summary.format(metric.fmt, scale=metric.scale)


def results_tables(groups: list[GroupSummary], tests: dict[tuple[str, str, str], PairedTest]) -> list[Block]:
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
                    *_paired_cells(g, tests),
                ]
            )
        blocks += [Heading(f"{dataset} / {arch}", 3), Table(RESULT_COLUMNS, table)]
    return blocks


def _claims_blocks(results: list[ClaimResult]) -> list[Block]:
    counts = {v: sum(r.verdict == v for r in results) for v in (REPRODUCED, NOT_REPRODUCED, NOT_RUN)}
    different = sum(r.setting == "different" for r in results)
    summary = (
        f"{len(results)} claims: {counts[REPRODUCED]} reproduced, {counts[NOT_REPRODUCED]} not reproduced, "
        f"{counts[NOT_RUN]} not run."
    )
    if different:
        summary += (
            f" {different} of the measured claims were measured outside the paper's setting (other datasets "
            "or models); they say whether the claim holds here, not whether the paper's number is right."
        )
    blocks: list[Block] = [Text(summary)]
    measured = [r for r in results if r.verdict != NOT_RUN]
    if measured:
        blocks.append(
            Table(
                ["claim", "source", "claim says", "measured", "setting", "verdict", "reason"],
                [
                    [r.claim.text, r.claim.source, r.claim.expected, r.measured_text, r.setting, r.verdict, r.reason]
                    for r in measured
                ],
            )
        )
    not_run: dict[tuple[str, str], list[ClaimResult]] = defaultdict(list)
    for r in results:
        if r.verdict == NOT_RUN:
            not_run[(r.claim.source, r.reason)].append(r)
    if not_run:
        rows = []
        for (source, reason), group in not_run.items():
            models = list(dict.fromkeys(r.claim.paper_arch for r in group if r.claim.paper_arch))
            ids = f"{len(group)} claim{'s' if len(group) != 1 else ''}" + (
                f" ({', '.join(models)})" if models else f": {'; '.join(r.claim.text for r in group)}"
            )
            rows.append([source, ids, NOT_RUN, reason])
        blocks.append(
            Table(
                ["source", "claims", "verdict", "reason"],
                rows,
                caption="Claims the study could not check, grouped by source and reason:",
            )
        )
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
            f"Cells: mean ± sample standard deviation over seeds, then the {level}% t confidence interval "
            f"(scipy.stats.t, n-1 degrees of freedom), not clipped to the metric's range (a top-5 interval can pass "
            f"100); one seed gives no interval. Only finished cells count."
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
            f"Paired test: each baseline at the 'matched' operating point (EDropout's rate on the same dataset, arch "
            f"and seed) against EDropout's own cells, top-1, paired by seed, {TTEST_NAME}; n/a with fewer than 2 pairs "
            "or when the differences do not vary."
        ),
    ]


def _metrics_summary(groups: list[GroupSummary], cells: pd.DataFrame, claims: list[ClaimResult]) -> dict:
    """Small nested summary for `dvc metrics show`: dataset -> arch -> method@point -> means."""
    out: dict = {
        "cells": {s: int((cells["status"] == s).sum()) for s in STATUSES},
        "claims": {
            v.replace(" ", "_"): sum(r.verdict == v for r in claims) for v in (REPRODUCED, NOT_REPRODUCED, NOT_RUN)
        },
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


def _blocks(cells, counts, claim_results, items, results: list[Block], figures) -> list[Block]:
    """The report's content, in reading order."""
    blocks: list[Block] = [
        _overview(cells, counts),
        Heading("Claims of the paper"),
        *_claims_blocks(claim_results),
        Heading("Reporting checklist (Blalock et al. 2020)"),
        Table(["item", "status", "detail"], [[i.item, "met" if i.met else "not met", i.detail] for i in items]),
        Heading("Results"),
        *(results or [Text("No cells to summarise.")]),
        Heading("EDropout against its controls"),
        *controls_blocks(cells),
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
    cells = derive(load_results(results_csv))
    claims = load_claims(claims_file)
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
        blocks = _blocks(cells, counts, claim_results, items, results_tables(groups, tests), figures)

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
        claims={v: sum(r.verdict == v for r in claim_results) for v in (REPRODUCED, NOT_REPRODUCED, NOT_RUN)},
        checklist_met=sum(i.met for i in items),
        checklist_items=len(items),
        figures=[f.name for f in figures.figures],
        notes=figures.notes,
    )
