"""The verdict's figure: per (dataset, arch[, EDropout point]) EDropout minus each control and each
baseline at EDropout's rate minus EDropout, paired by seed, 95% CIs, Holm-detected marks filled.
The rows come from `verdict.comparison_rows`."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.lines import Line2D

PAPER = "paper"  # the budget protocol a cell without a recorded one ran under
LABELLED = 3  # baselines whose numbers are written on the figure
CONTROL_COLOR, BEST_COLOR, BASELINE_COLOR = "#d95f02", "0.25", "0.6"


def blank(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or str(value).strip() == ""


def draw_verdict(rows: pd.DataFrame, path: Path) -> dict[tuple, list[str]]:
    """Per (dataset, arch[, point]) facet two panels sharing x: EDropout minus each control (highlighted), each
    baseline at EDropout's rate minus EDropout (grey, best first, the best LABELLED ones written out), 95% CIs, a
    line at 0; filled = detected after Holm, '*' = a cell with a status note. Returns each facet's row labels
    as read back from the drawn axes, top to bottom."""
    rows = rows.dropna(subset=["mean"])
    facets = sorted(set(zip(rows["dataset"], rows["arch"], rows["point"])))
    counts = rows.groupby(["dataset", "arch", "point", "kind"]).size()
    n_ctl = max([counts.get((*f, "control"), 0) for f in facets] + [1])
    n_base = max([counts.get((*f, "baseline"), 0) for f in facets] + [1])
    cols = min(len(facets), 3)
    grid = math.ceil(len(facets) / cols)
    fig = plt.figure(figsize=(5.2 * cols, grid * (0.28 * (n_ctl + n_base) + 2.2)), layout="constrained")
    spec = fig.add_gridspec(2 * grid, cols, height_ratios=[n_ctl + 1.2, n_base + 1.2] * grid)
    drawn = {}
    for i, facet in enumerate(facets):
        r, c = divmod(i, cols)
        top = fig.add_subplot(spec[2 * r, c])
        bottom = fig.add_subplot(spec[2 * r + 1, c], sharex=top)
        here = rows[(rows["dataset"] == facet[0]) & (rows["arch"] == facet[1]) & (rows["point"] == facet[2])]
        where = f"{facet[0]} / {facet[1]}" + (f" at {facet[2]}" if facet[2] else "")
        _panel(top, here[here["kind"] == "control"], f"{where}\nEDropout - control (> 0: EDropout better)", True)
        protocol = here["protocol"].iloc[0] if len(here) else PAPER
        title = f"baseline at EDropout's rate - EDropout (> 0: baseline better)\nbudget protocol: {protocol}"
        _panel(bottom, here[here["kind"] == "baseline"], title, False)
        bottom.set_xlabel("top-1 difference (pp), 95% CI")
        drawn[facet] = [t.get_text() for ax in (top, bottom) for t in ax.get_yticklabels()]
    marks = [
        Line2D([], [], marker="o", color="0.3", linestyle="", markerfacecolor=f, label=t)
        for f, t in (("0.3", "detected after Holm"), ("white", "not detected"))
    ]
    marks.append(Line2D([], [], linestyle="", label="name * : a compared cell has a status note"))
    fig.legend(handles=marks, loc="outside lower center", ncols=3, fontsize="small")
    fig.suptitle("Verdict: top-1 differences at EDropout's rate, paired by seed (95% CI)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return drawn


def _panel(ax, rows: pd.DataFrame, title: str, controls: bool) -> None:
    rows = rows.sort_values("mean", ascending=False).reset_index(drop=True)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.grid(axis="x", color="0.9")
    ax.margins(x=0.12)
    if len(rows):  # one collection per kind of mark, not one errorbar per row: a large study has many rows
        y = list(range(len(rows)))
        mean = [float(m) for m in rows["mean"]]
        low = [m if blank(v) else float(v) for m, v in zip(mean, rows["ci_low"])]
        high = [m if blank(v) else float(v) for m, v in zip(mean, rows["ci_high"])]
        colors = [CONTROL_COLOR if controls else BEST_COLOR if i < LABELLED else BASELINE_COLOR for i in y]
        faces = [c if d else "white" for c, d in zip(colors, rows["detected"])]
        ax.hlines(y, low, high, colors=colors, linewidth=1.5)
        ax.scatter(low + high, y + y, marker="|", s=25, c=colors + colors, linewidths=1.5)
        ax.scatter(mean, y, marker="o", s=36, c=faces, edgecolors=colors, linewidths=1.0, zorder=3)
        label = {"xytext": (4, 0), "textcoords": "offset points", "va": "center", "fontsize": "x-small"}
        for i in y[: len(y) if controls else LABELLED]:
            ax.annotate(f"{mean[i]:+.2f}", (high[i], i), color=colors[i], **label)
    ax.set_yticks(range(len(rows)), [f"{n}{' *' if noted else ''}" for n, noted in zip(rows["name"], rows["noted"])])
    ax.set_ylim(len(rows) - 0.5 if len(rows) else 0.5, -0.5)
    ax.tick_params(axis="y", labelsize="small")
    ax.set_title(title, fontsize="small", loc="left")
    if rows.empty:
        ax.text(0.5, 0.5, "none ran", transform=ax.transAxes, ha="center", va="center", color="0.4")
