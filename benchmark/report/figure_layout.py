"""How the report's figures are laid out: one panel per (dataset, arch), one colour per method, the legend
below the panels (never over a title or the data), and collapsed methods kept off a panel's y-range."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from benchmark.report.stats import GroupSummary, method_order

DPI = 110


@dataclass(frozen=True)
class Figure:
    name: str  # file name under figures/
    title: str
    caption: str


@dataclass(frozen=True)
class Drawn:
    """What a figure returns when it was drawn but left something out of its axes (one line per thing)."""

    notes: list[str]


def palette(methods) -> dict[str, tuple]:
    methods = sorted(set(methods), key=method_order)
    palette = "tab10" if len(methods) <= 10 else "tab20"  # no two methods share a colour
    return dict(zip(methods, sns.color_palette(palette, max(len(methods), 1))))


def legend_below(fig, axes) -> None:
    """One legend for the whole figure, below the panels (constrained layout keeps room for it there), so it
    never covers a title or the data (per-panel legends hide the data)."""
    entries: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    if entries:
        columns = min(len(entries), 3 * min(len(axes), 3))
        fig.legend(list(entries.values()), list(entries), loc="outside lower center", ncols=columns, fontsize="small")


OUTLIER_IQRS = 3.0  # a point beyond the panel's quartiles by this many interquartile ranges is off the scale


def off_scale(values: pd.Series, worse_is_high: bool) -> pd.Series:
    """Which of a panel's values are far beyond the rest in the worse direction (Tukey's far-out rule,
    quartile +- 3 IQR): a method that collapsed. Needs 4 values and some spread; else none."""
    finite = values.dropna()
    if len(finite) < 4:
        return pd.Series(False, index=values.index)
    q1, q3 = np.percentile(finite, [25, 75])
    spread = q3 - q1
    if spread <= 0:
        return pd.Series(False, index=values.index)
    return values > q3 + OUTLIER_IQRS * spread if worse_is_high else values < q1 - OUTLIER_IQRS * spread


def clip_outliers(ax, panel: pd.DataFrame, x: pd.Series, y: str, colors, worse_is_high: bool, where: str, fmt: str):
    """Keep a panel's y-range to its ordinary points: the points `off_scale` finds are drawn as arrows at the
    edge, labelled with their method and value; returns one note per method so marked."""
    far = off_scale(panel[y], worse_is_high)
    if not far.any():
        return []
    kept = panel.loc[~far, [c for c in (y, f"{y}_low", f"{y}_high") if c in panel]]  # with their CIs
    low, high = np.nanmin(kept.to_numpy(float)), np.nanmax(kept.to_numpy(float))
    pad = 0.08 * max(high - low, 1e-6)
    ax.set_ylim(low - pad, high + 2 * pad) if worse_is_high else ax.set_ylim(low - 2 * pad, high + pad)
    edge = high + 1.5 * pad if worse_is_high else low - 1.5 * pad
    notes = []
    for method, rows in panel[far].groupby("method"):
        marker = "^" if worse_is_high else "v"
        ax.scatter(x[rows.index], [edge] * len(rows), marker=marker, s=70, color=colors[method], label=method)
        values = ", ".join(fmt.format(v) for v in rows[y])
        ax.annotate(
            f"{method}: {values}",
            (x[rows.index].iloc[0], edge),
            textcoords="offset points",
            xytext=(4, -10 if worse_is_high else 4),
            fontsize="x-small",
            color=colors[method],
        )
        notes.append(f"{where}: {method} off the scale ({y} {values}); drawn as an arrow at the edge")
    return notes


def panels_grid(n: int, width: float = 4.6, height: float = 3.8):
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False, layout="constrained")
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def pair_panels(frame: pd.DataFrame):
    """One panel per (dataset, arch) of `frame`: the figure, its axes and (ax, dataset, arch, rows)."""
    pairs = sorted(set(zip(frame["dataset"], frame["arch"])))
    fig, axes = panels_grid(len(pairs))
    return (
        fig,
        axes,
        [(ax, d, a, frame[(frame["dataset"] == d) & (frame["arch"] == a)]) for ax, (d, a) in zip(axes, pairs)],
    )


def save_figure(fig, out_dir: Path, name: str) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_dir / name, dpi=DPI, bbox_inches="tight")
    plt.close(fig)


def group_means(groups: list[GroupSummary]) -> pd.DataFrame:
    """One row per group: the mean (and CI) of each summarised metric; NaN where there is none."""
    rows = []
    for g in groups:
        row = {"dataset": g.dataset, "arch": g.arch, "method": g.method, "operating_point": g.operating_point}
        for metric, s in g.metrics.items():
            row[metric] = np.nan if s.mean is None else s.mean
            row[f"{metric}_low"] = np.nan if s.ci_low is None else s.ci_low
            row[f"{metric}_high"] = np.nan if s.ci_high is None else s.ci_high
        rows.append(row)
    return pd.DataFrame(rows)
