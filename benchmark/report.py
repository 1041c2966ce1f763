"""The reproduction report: from the study's table of cells (`reports/results.csv`) to what a researcher reads.

`build_report` computes everything first (statistics, claims, checklist, figures), builds the report as data
(a list of blocks) and renders it twice, as markdown and as one self-contained HTML file. Every output is
written into a staging folder and moved into place at the end, so a crash never leaves half a report.
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
import shutil
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from benchmark.claims import (
    CLAIMS_PATH,
    NOT_REPRODUCED,
    NOT_RUN,
    REPRODUCED,
    ClaimResult,
    check_claims,
    load_claims,
)
from benchmark.errors import UserError
from benchmark.stats import (
    CONFIDENCE,
    DENSE,
    EDROPOUT,
    MATCHED,
    TTEST_NAME,
    GroupSummary,
    PairedTest,
    derive,
    group_summaries,
    paired_tests,
)

STATUSES = ("finished", "failed", "missing")
REQUIRED_COLUMNS = ["cell", "method", "arch", "dataset", "seed", "operating_point", "status"]
TEXT_COLUMNS = ["cell", "method", "arch", "dataset", "operating_point", "granularity", "schedule", "status",
                "error", "result_dir"]
TRADEOFF_COLUMNS = ["method", "arch", "dataset", "seed", "operating_point", "param_pruning_rate", "top1",
                    "top1_drop", "mac_reduction", "latency_speedup_b1"]
METRICS_SUMMARY = ["top1", "top1_drop", "param_pruning_rate", "latency_speedup_b1"]


# --- input ---------------------------------------------------------------------------------------------------

def load_results(path: Path) -> pd.DataFrame:
    """The study's cells from results.csv, checked: one-line UserError for a file the report cannot use.

    A header-only or empty file is a study with no cells (the report says so)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"results table {str(path)!r} not found; run the aggregate stage first (dvc repro aggregate)")
    if path.stat().st_size == 0:
        return pd.DataFrame(columns=REQUIRED_COLUMNS)
    try:
        frame = pd.read_csv(path, dtype={c: str for c in TEXT_COLUMNS}, keep_default_na=True)
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise UserError(f"{path.name} is not a readable CSV table: {str(exc).splitlines()[0]}") from None
    lacking = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if lacking:
        raise UserError(f"{path.name} lacks column{'s' if len(lacking) > 1 else ''} {', '.join(lacking)}")
    for column in TEXT_COLUMNS:
        if column in frame:
            frame[column] = frame[column].fillna("").astype(str).str.strip()
    for i, row in frame.iterrows():
        blank = [c for c in REQUIRED_COLUMNS if c != "seed" and not row[c]]
        if blank:
            raise UserError(f"{path.name} row {i + 2}: empty {', '.join(blank)}")
        if row["status"] not in STATUSES:
            raise UserError(f"{path.name}: cell {row['cell']!r} has status {row['status']!r}; "
                            f"valid: {', '.join(STATUSES)}")
    seeds = pd.to_numeric(frame["seed"], errors="coerce")
    bad = frame.loc[seeds.isna() | (seeds != seeds.round()), "cell"]
    if not bad.empty:
        raise UserError(f"{path.name}: cell {bad.iloc[0]!r} has a seed that is not an integer")
    frame["seed"] = seeds.astype(int)
    twice = frame.loc[frame.duplicated("cell"), "cell"]
    if not twice.empty:
        raise UserError(f"{path.name}: cell {twice.iloc[0]!r} appears twice")
    same = frame.duplicated(["dataset", "arch", "method", "operating_point", "seed"])
    if same.any():
        row = frame[same].iloc[0]
        raise UserError(f"{path.name}: two cells for {row['method']} at {row['operating_point']} on "
                        f"{row['dataset']}/{row['arch']} seed {row['seed']}")
    return frame


# --- checklist (Blalock et al. 2020) ---------------------------------------------------------------------------

MIN_PAIRS, MIN_POINTS, MIN_SEEDS = 2, 5, 2
RANDOM_METHODS = ("random_structured", "random_unstructured")
MAGNITUDE_METHODS = ("global_magnitude", "layer_magnitude")


@dataclass(frozen=True)
class ChecklistItem:
    item: str
    met: bool
    detail: str


def _some(items, limit: int = 6) -> str:
    items = list(items)
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def checklist(cells: pd.DataFrame) -> list[ChecklistItem]:
    """Blalock et al. 2020's reporting items, each met or not with what the data shows (`cells`: `derive`d)."""
    done = cells[cells["status"] == "finished"]
    pruned = done[done["method"] != DENSE]
    items = []

    pairs = sorted(set(zip(done["dataset"], done["arch"])))
    wanted = sorted(set(zip(pruned["dataset"], pruned["arch"]))) or pairs
    dense = done[done["method"] == DENSE]
    lacking = [f"{d}/{a}" for d, a in wanted if (d, a) not in set(zip(dense["dataset"], dense["arch"]))]
    if not wanted:
        detail = "no finished cells"
    elif lacking:
        detail = f"no finished dense cell for {_some(lacking)}"
    else:
        detail = f"dense top-1 for {_some(f'{d}/{a}' for d, a in wanted)}"
    items.append(ChecklistItem("dense (unpruned) accuracy reported", bool(wanted) and not lacking, detail))

    items.append(ChecklistItem(
        f"at least {MIN_PAIRS} (dataset, architecture) pairs", len(pairs) >= MIN_PAIRS,
        f"{len(pairs)} pair{'s' if len(pairs) != 1 else ''} with finished cells"
        + (f": {_some(f'{d}/{a}' for d, a in pairs)}" if pairs else "")))

    if pruned.empty:
        met, detail = False, "no finished pruned cells"
    else:
        has_rate = pruned["param_pruning_rate"].notna() | pruned["effective_mac_reduction"].notna()
        has_speed = pruned["latency_speedup_b1"].notna()
        met = bool(has_rate.all() and has_speed.all())
        detail = (f"{int(has_rate.sum())}/{len(pruned)} pruned cells report compression (pruning rate or MAC "
                  f"reduction), {int(has_speed.sum())}/{len(pruned)} a measured speed-up")
    items.append(ChecklistItem("compression and speed-up both reported", met, detail))

    curves = pruned[pruned["method"] != EDROPOUT].groupby(["dataset", "arch", "method"])["operating_point"].nunique()
    short = [f"{m} on {d}/{a}: {n}" for (d, a, m), n in curves.items() if n < MIN_POINTS]
    if curves.empty:
        met, detail = False, "no finished baseline cells at a pruning rate"
    elif short:
        met, detail = False, f"fewer than {MIN_POINTS} operating points: {_some(short)}"
    else:
        met, detail = True, f"every baseline curve has {curves.min()}-{curves.max()} operating points"
    items.append(ChecklistItem(f"trade-off curves with at least {MIN_POINTS} operating points", met,
                               detail + " (EDropout's rate is emergent: one point per run)"))

    seeds = done.groupby(["dataset", "arch", "method", "operating_point"])["seed"].nunique()
    few = [f"{m} at {p} on {d}/{a}: {n}" for (d, a, m, p), n in seeds.items() if n < MIN_SEEDS]
    if seeds.empty:
        met, detail = False, "no finished cells"
    elif few:
        met, detail = False, f"fewer than {MIN_SEEDS} finished seeds: {_some(few)}"
    else:
        met, detail = True, f"every result is a mean ± spread over {seeds.min()}-{seeds.max()} seeds"
    items.append(ChecklistItem(f"mean ± spread over runs (at least {MIN_SEEDS} seeds)", met, detail))

    methods = set(done["method"])
    randoms, magnitudes = sorted(methods & set(RANDOM_METHODS)), sorted(methods & set(MAGNITUDE_METHODS))
    items.append(ChecklistItem(
        "random and magnitude baselines present", bool(randoms and magnitudes),
        f"random: {_some(randoms) or 'none'}; magnitude: {_some(magnitudes) or 'none'} (finished cells)"))
    return items


# --- the report as data --------------------------------------------------------------------------------------

@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Text:
    text: str


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Table:
    columns: list[str]
    rows: list[list[str]]
    caption: str = ""


@dataclass
class Image:
    name: str  # under figures/
    title: str
    caption: str


Block = Heading | Text | Bullets | Table | Image


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(title: str, blocks: list[Block]) -> str:
    out = [f"# {title}", ""]
    for block in blocks:
        if isinstance(block, Heading):
            out += ["#" * block.level + " " + block.text, ""]
        elif isinstance(block, Text):
            out += [block.text, ""]
        elif isinstance(block, Bullets):
            out += [f"- {item}" for item in block.items] + [""]
        elif isinstance(block, Table):
            if block.caption:
                out += [block.caption, ""]
            out.append("| " + " | ".join(map(_md_cell, block.columns)) + " |")
            out.append("|" + "---|" * len(block.columns))
            out += ["| " + " | ".join(map(_md_cell, row)) + " |" for row in block.rows]
            out.append("")
        elif isinstance(block, Image):
            out += [f"![{block.title}](figures/{block.name})", "", f"*{block.caption}*", ""]
    return "\n".join(out).rstrip() + "\n"


STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1400px;
       padding: 0 1em; color: #1f2328; line-height: 1.45; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.85em; }
th, td { border: 1px solid #d0d7de; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
tr:nth-child(even) td { background: #fbfbfc; }
figure { margin: 1em 0 2em; }
figure img { max-width: 100%; border: 1px solid #d0d7de; }
figcaption, .caption { color: #57606a; font-size: 0.9em; }
code { background: #f6f8fa; padding: 0 3px; border-radius: 3px; }
.verdict-reproduced { color: #1a7f37; font-weight: 600; }
.verdict-not-reproduced { color: #cf222e; font-weight: 600; }
.verdict-not-run { color: #57606a; }
"""


def _td(text: str) -> str:
    text = str(text)
    css = {REPRODUCED: "verdict-reproduced", NOT_REPRODUCED: "verdict-not-reproduced",
           NOT_RUN: "verdict-not-run"}.get(text)
    return f'<td class="{css}">{html.escape(text)}</td>' if css else f"<td>{html.escape(text)}</td>"


def _inline(text: str) -> str:
    """Escaped text with markdown `code` spans as <code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def render_html(title: str, blocks: list[Block], images: dict[str, bytes]) -> str:
    """One self-contained page: inline CSS, figures as base64 data URIs, no external resources."""
    out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
           f"<title>{html.escape(title)}</title>", f"<style>{STYLE}</style>", "</head>", "<body>",
           f"<h1>{html.escape(title)}</h1>"]
    for block in blocks:
        if isinstance(block, Heading):
            out.append(f"<h{block.level}>{html.escape(block.text)}</h{block.level}>")
        elif isinstance(block, Text):
            out.append(f"<p>{_inline(block.text)}</p>")
        elif isinstance(block, Bullets):
            out.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in block.items) + "</ul>")
        elif isinstance(block, Table):
            if block.caption:
                out.append(f'<p class="caption">{html.escape(block.caption)}</p>')
            out.append("<table><thead><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in block.columns)
                       + "</tr></thead><tbody>")
            out += ["<tr>" + "".join(_td(c) for c in row) + "</tr>" for row in block.rows]
            out.append("</tbody></table>")
        elif isinstance(block, Image):
            data = base64.b64encode(images[block.name]).decode("ascii")
            out.append(f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(block.title)}">'
                       f"<figcaption>{html.escape(block.caption)}</figcaption></figure>")
    out += ["</body>", "</html>"]
    return "\n".join(out) + "\n"


# --- content -------------------------------------------------------------------------------------------------

def _paired_cells(group: GroupSummary, tests: dict[tuple[str, str, str], PairedTest]) -> list[str]:
    test = tests.get((group.dataset, group.arch, group.method))
    if group.operating_point != MATCHED or test is None:
        return ["-", "-"]
    detail = f"{test.test}, {test.n_pairs} pair{'s' if test.n_pairs != 1 else ''}"
    if test.mean_difference is not None:
        detail += f", mean diff {test.mean_difference:+.2f} pp (baseline - EDropout)"
    return [detail, test.format_p()]


RESULT_COLUMNS = ["method", "operating point", "granularity", "seeds finished", "top-1 %", "top-5 %",
                  "top-1 drop (pp)", "top-5 drop (pp)", "params pruned %", "MAC reduction", "speed-up b1",
                  "train cost (s)", "paired test vs EDropout (top-1)", "p-value"]


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
            table.append([
                g.method, g.operating_point, g.granularity or "-", f"{g.finished}/{g.cells}",
                m["top1"].format(), m["top5"].format(), m["top1_drop"].format(), m["top5_drop"].format(),
                m["param_pruning_rate"].format("{:.1f}", scale=100), m["effective_mac_reduction"].format(),
                m["latency_speedup_b1"].format(), m["train_cost_seconds"].format("{:.0f}"),
                *_paired_cells(g, tests),
            ])
        blocks += [Heading(f"{dataset} / {arch}", 3), Table(RESULT_COLUMNS, table)]
    return blocks


def _claims_blocks(results: list[ClaimResult]) -> list[Block]:
    counts = {v: sum(r.verdict == v for r in results) for v in (REPRODUCED, NOT_REPRODUCED, NOT_RUN)}
    different = sum(r.setting == "different" for r in results)
    summary = (f"{len(results)} claims: {counts[REPRODUCED]} reproduced, {counts[NOT_REPRODUCED]} not reproduced, "
               f"{counts[NOT_RUN]} not run.")
    if different:
        summary += (f" {different} of the measured claims were measured outside the paper's setting (other datasets "
                    "or models); they say whether the claim holds here, not whether the paper's number is right.")
    blocks: list[Block] = [Text(summary)]
    measured = [r for r in results if r.verdict != NOT_RUN]
    if measured:
        blocks.append(Table(["claim", "source", "claim says", "measured", "setting", "verdict", "reason"],
                            [[r.claim.text, r.claim.source, r.claim.expected, r.measured_text, r.setting, r.verdict,
                              r.reason] for r in measured]))
    not_run: dict[tuple[str, str], list[ClaimResult]] = defaultdict(list)
    for r in results:
        if r.verdict == NOT_RUN:
            not_run[(r.claim.source, r.reason)].append(r)
    if not_run:
        rows = []
        for (source, reason), group in not_run.items():
            models = list(dict.fromkeys(r.claim.paper_arch for r in group if r.claim.paper_arch))
            ids = f"{len(group)} claim{'s' if len(group) != 1 else ''}" + (f" ({', '.join(models)})" if models else
                                                                          f": {'; '.join(r.claim.text for r in group)}")
            rows.append([source, ids, NOT_RUN, reason])
        blocks.append(Table(["source", "claims", "verdict", "reason"], rows,
                            caption="Claims the study could not check, grouped by source and reason:"))
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
    rows = [[r["cell"], r["status"], _short(r["error"]) or ("not run yet, or stopped before it wrote a result"
                                                            if r["status"] == "missing" else "no error recorded")]
            for _, r in bad.iterrows()]
    return [Text(f"{len(bad)} of {len(cells)} expected cells did not finish; their results are left out of every "
                 "summary above."), Table(["cell", "status", "error"], rows)]


def _method_notes() -> list[str]:
    level = round(100 * CONFIDENCE)
    return [
        (f"Cells: mean ± sample standard deviation over seeds, then the {level}% t confidence interval "
         f"(scipy.stats.t, n-1 degrees of freedom), not clipped to the metric's range (a top-5 interval can pass "
         f"100); one seed gives no interval. Only finished cells count."),
        ("Drops are paired by seed: dense top-k minus the cell's top-k on the same dataset, architecture and seed, "
         "in percentage points; a seed whose dense cell did not finish has no drop."),
        ("MAC reduction: dense MACs / MACs of the physically pruned network; for unstructured methods (same shapes) "
         "dense MACs / non-zero MACs, a theoretical gain. Speed-up: measured CPU latency at batch 1, dense / pruned."),
        ("Train cost: seconds of training in the cell including the dense training a post-training method started "
         "from (total_train_seconds), else train_seconds."),
        (f"Paired test: each baseline at the 'matched' operating point (EDropout's rate on the same dataset, arch "
         f"and seed) against EDropout's own cells, top-1, paired by seed, {TTEST_NAME}; n/a with fewer than 2 pairs "
         "or when the differences do not vary."),
    ]


def _metrics_summary(groups: list[GroupSummary], cells: pd.DataFrame, claims: list[ClaimResult]) -> dict:
    """Small nested summary for `dvc metrics show`: dataset -> arch -> method@point -> means."""
    out: dict = {"cells": {s: int((cells["status"] == s).sum()) for s in STATUSES},
                 "claims": {v.replace(" ", "_"): sum(r.verdict == v for r in claims)
                            for v in (REPRODUCED, NOT_REPRODUCED, NOT_RUN)}}
    for g in groups:
        entry = {"seeds": g.metrics["top1"].n}
        for metric in METRICS_SUMMARY:
            mean = g.metrics[metric].mean
            if mean is not None:
                entry[metric] = round(mean, 6)
        out.setdefault(g.dataset, {}).setdefault(g.arch, {})[f"{g.method}@{g.operating_point}"] = entry
    return out


def _tradeoff(cells: pd.DataFrame) -> pd.DataFrame:
    done = cells[cells["status"] == "finished"].copy()
    done["mac_reduction"] = done["effective_mac_reduction"]  # non-zero MACs for unstructured methods
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


def build_report(results_csv: Path, out_dir: Path, title: str, root: Path | None = None,
                 claims_file: Path = CLAIMS_PATH) -> ReportSummary:
    """Write report.md, report.html, figures/*.png, metrics.json and plots/tradeoff.csv into `out_dir`.

    `root` resolves each cell's `result_dir` (default: the project root); `claims_file` lists the paper's claims.
    """
    from benchmark.figures import make_figures
    from benchmark.study import PROJECT_ROOT

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
        blocks: list[Block] = []
        if cells.empty:
            blocks.append(Text("No results: results.csv lists no cells. Run the study (`make study`) so the aggregate "
                               "stage has cells to list; every claim below is 'not run'."))
        else:
            blocks.append(Text(
                f"{len(cells)} expected cells: {counts['finished']} finished, {counts['failed']} failed, "
                f"{counts['missing']} missing. Datasets: {', '.join(sorted(set(cells['dataset'])))}; "
                f"architectures: {', '.join(sorted(set(cells['arch'])))}; methods: "
                f"{', '.join(sorted(set(cells['method'])))}; seeds: "
                f"{', '.join(map(str, sorted(set(cells['seed']))))}."))
        blocks += [Heading("Claims of the paper"), *_claims_blocks(claim_results),
                   Heading("Reporting checklist (Blalock et al. 2020)"),
                   Table(["item", "status", "detail"],
                         [[i.item, "met" if i.met else "not met", i.detail] for i in items]),
                   Heading("Results")]
        results = results_tables(groups, tests)
        blocks += results or [Text("No cells to summarise.")]
        blocks.append(Heading("Figures"))
        blocks += [Image(f.name, f.title, f.caption) for f in figures.figures] or [Text("No figures: no data to plot.")]
        if figures.notes:
            blocks += [Text("Not drawn or left out:"), Bullets(figures.notes)]
        blocks += [Heading("Missing and failed cells"), *_problems(cells), Heading("How the numbers are computed"),
                   Bullets(_method_notes())]

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
        out_dir=out_dir, cells=len(cells), finished=counts["finished"], failed=counts["failed"],
        missing=counts["missing"], claims={v: sum(r.verdict == v for r in claim_results)
                                           for v in (REPRODUCED, NOT_REPRODUCED, NOT_RUN)},
        checklist_met=sum(i.met for i in items), checklist_items=len(items),
        figures=[f.name for f in figures.figures], notes=figures.notes)
