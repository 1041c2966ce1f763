"""The reproduction report: from the study's table of cells (`reports/results.csv`) to what a researcher reads.

`build_report` computes everything first (statistics, claims, checklist, figures), builds the report as data
(a list of blocks) and renders it twice, as markdown and as one self-contained HTML file. Every output is
written into a staging folder and moved into place at the end, so a crash never leaves half a report.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from benchmark.core.paths import PROJECT_ROOT
from benchmark.report.checklist import checklist
from benchmark.report.claims import CLAIMS_PATH, check_claims, load_claims
from benchmark.report.claims_section import claims_blocks, verdict_counts
from benchmark.report.comparisons import comparisons_blocks
from benchmark.report.controls import controls_blocks
from benchmark.report.coverage import coverage_blocks, latency_blocks, status_note_blocks
from benchmark.report.dvc_outputs import dvc_method_points, dvc_metrics, metrics_summary, tradeoff
from benchmark.report.inference import HOLM_NAME, INTERVAL_NAME, MDE_NAME
from benchmark.report.render import (
    Block,
    Bullets,
    Heading,
    Image,
    Table,
    Text,
    render_html,
    render_markdown,
)
from benchmark.report.results_section import DEFAULT_TRACKING_URL, results_tables
from benchmark.report.stats import (
    CONFIDENCE,
    TTEST_NAME,
    derive,
    group_summaries,
    paired_tests,
    paper_point,
)
from benchmark.report.table import STATUSES, load_results, with_config_fields
from benchmark.report.verdict import verdict_blocks

# --- content -------------------------------------------------------------------------------------------------


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


def _publish(staging: Path, out_dir: Path, files: list[str], folders: tuple[str, ...] = ("figures", "metrics")) -> None:
    """Move the staged outputs into `out_dir`; each folder is replaced as a whole (no stale figures or metrics)."""
    for name in files:
        (out_dir / name).parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / name, out_dir / name)
    for folder in folders:
        old = out_dir / folder
        if old.exists():
            os.replace(old, staging / f"old-{folder}")
        os.replace(staging / folder, old)


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


def provenance(profile: str | None = None, root: Path = PROJECT_ROOT) -> dict[str, str]:
    """What the report was built from and where: git commit and whether the code differed from it (outputs
    the study rewrites, reports/ and dvc.lock, do not count), the profile, the date and the machine."""

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.rstrip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    changed = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!reports", ":!dvc.lock")
    dirty = (
        "unknown"
        if changed is None
        else ("yes: " + ", ".join(line[3:] for line in changed.splitlines()[:8]))
        if changed
        else "no"
    )
    return {
        "commit": commit or "unknown (not a git checkout)",
        "uncommitted changes": dirty if commit else "unknown",
        "profile": profile or "-",
        "built": time.strftime("%Y-%m-%d %H:%M %Z"),
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
    }


def _provenance_blocks(info: dict[str, str] | None) -> list[Block]:
    if not info:
        return []
    return [Table(["built from", ""], [[k, v] for k, v in info.items()])]


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
    results_csv: Path,
    out_dir: Path,
    title: str,
    root: Path | None = None,
    claims_file: Path = CLAIMS_PATH,
    tracking_url: str | None = None,
    built_from: dict[str, str] | None = None,
) -> ReportSummary:
    """Write report.md, report.html, figures/*.png, metrics.json, metrics/ (`dvc metrics show`), plots/tradeoff.csv
    and plots/methods.json (`dvc plots show`) into `out_dir`.

    `root` resolves each cell's `result_dir` (default: the project root); `claims_file` lists the paper's claims;
    `tracking_url` is the MLflow UI the rows link to (default MLFLOW_UI_URL, else `make ui`'s address);
    `built_from` the header's provenance (`provenance()`; None: no header).
    """
    tracking_url = tracking_url or os.environ.get("MLFLOW_UI_URL") or DEFAULT_TRACKING_URL
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
        results = results_tables(groups, cells, tracking_url)
        blocks = _blocks(cells, counts, claim_results, items, results, tests, figures)
        verdict, drawn = verdict_blocks(cells, staging / "figures", root, claims)
        blocks[1:1] = verdict  # the verdict opens the report: after the overview, before the claims
        blocks[:0] = _provenance_blocks(built_from)
        figures.figures[:0] = drawn  # first in the page and in the summary

        images = {f.name: (staging / "figures" / f.name).read_bytes() for f in figures.figures}
        _write(staging / "report.md", render_markdown(title, blocks))
        _write(staging / "report.html", render_html(title, blocks, images))
        _write(staging / "metrics.json", json.dumps(metrics_summary(groups, cells, claim_results), indent=2) + "\n")
        for name, values in dvc_metrics(groups, cells).items():
            _write(staging / "metrics" / name, json.dumps(values, indent=2) + "\n")
        (staging / "plots").mkdir()
        tradeoff(cells).to_csv(staging / "plots" / "tradeoff.csv", index=False, float_format="%.6g")
        points = {"points": dvc_method_points(cells)}
        _write(staging / "plots" / "methods.json", json.dumps(points, indent=1) + "\n")
        plots = ["plots/tradeoff.csv", "plots/methods.json"]
        _publish(staging, out_dir, [*plots, "metrics.json", "report.html", "report.md"])
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
