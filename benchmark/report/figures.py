"""The report's figures (PNG, seaborn + matplotlib on the Agg backend). A figure without data is skipped
with a note; nothing here raises on missing or odd results. Layout helpers: figure_layout.py; EDropout's
search dynamics: search_figure.py."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from benchmark.core import metrics as M
from benchmark.report.figure_layout import (  # noqa: F401 - Figure is this module's API too
    Drawn,
    Figure,
    clip_outliers,
    group_means,
    legend_below,
    off_scale,
    pair_panels,
    palette,
    save_figure,
)
from benchmark.report.search_figure import MAX_CURVES, search_dynamics  # noqa: F401 - re-exported
from benchmark.report.stats import DENSE, EDROPOUT, GroupSummary, method_order, pareto_front


@dataclass(frozen=True)
class FigureSpec:
    """A figure of the report: `draw(data, out_dir, name, colors)` writes `out_dir/name` and returns None (or
    `Drawn(notes)` when it marked points off its scale), or returns one line saying why it was not drawn.
    `data` is "groups" (seed summaries) or "cells" (every cell)."""

    draw: Callable[..., str | None]
    name: str
    title: str
    caption: str
    data: str


FIGURES: list[FigureSpec] = []  # in report order


def report_figure(name: str, title: str, caption: str, data: str = "groups"):
    """Decorator that adds a figure to every report (see README, "Add a report figure")."""
    if data not in ("groups", "cells"):
        raise ValueError(f"figure {name!r}: data must be 'groups' or 'cells', got {data!r}")
    if any(f.name == name for f in FIGURES):
        raise ValueError(f"figure {name!r} is registered twice")

    def decorator(draw: Callable[..., str | None]) -> Callable[..., str | None]:
        FIGURES.append(FigureSpec(draw, name, title, caption, data))
        return draw

    return decorator


@dataclass
class FigureSet:
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # figures skipped, curves left out, and why


@report_figure(
    "accuracy_vs_pruning.png",
    "Accuracy vs parameter pruning rate",
    "Top-1 (mean over seeds) vs the share of parameters pruned; bands and bars: 95% t confidence intervals.",
)
def accuracy_vs_pruning(
    groups: list[GroupSummary],
    out_dir: Path,
    name: str = "accuracy_vs_pruning.png",
    colors: dict[str, tuple] | None = None,
) -> str | None:
    """Top-1 vs parameter pruning rate, mean over seeds with its 95% CI band, one panel per dataset/arch."""
    means = group_means(groups)
    if means.empty or means[[M.TOP1, M.PARAM_PRUNING_RATE]].dropna().empty:
        return "accuracy vs pruning rate: no finished cell with top-1 and a pruning rate"
    means = means.dropna(subset=[M.TOP1, M.PARAM_PRUNING_RATE])
    colors = colors or palette(means["method"])
    marked = []
    with sns.axes_style("whitegrid"):
        fig, axes, panels = pair_panels(means)
        for ax, dataset, arch, panel in panels:
            far = off_scale(panel[M.TOP1], worse_is_high=False)
            for method, curve in sorted(panel.groupby("method"), key=lambda kv: method_order(kv[0])):
                curve = curve.sort_values(M.PARAM_PRUNING_RATE)
                x = 100 * curve[M.PARAM_PRUNING_RATE]
                low, high = curve["top1_low"].fillna(curve[M.TOP1]), curve["top1_high"].fillna(curve[M.TOP1])
                ax.plot(x, curve[M.TOP1], marker="o", color=colors[method], label=method)
                if len(curve) > 1:
                    ax.fill_between(x, low, high, color=colors[method], alpha=0.2, linewidth=0)
                elif far[curve.index].any():
                    pass  # off the scale: drawn at the edge below, no bar
                else:
                    xerr = None
                    if method == EDROPOUT and curve["param_pruning_rate_low"].notna().all():
                        xerr = [
                            100 * (curve[M.PARAM_PRUNING_RATE] - curve["param_pruning_rate_low"]),
                            100 * (curve["param_pruning_rate_high"] - curve[M.PARAM_PRUNING_RATE]),
                        ]
                    ax.errorbar(
                        x,
                        curve[M.TOP1],
                        yerr=[curve[M.TOP1] - low, high - curve[M.TOP1]],
                        xerr=xerr,
                        fmt="none",
                        ecolor=colors[method],
                        capsize=3,
                    )
                if method == DENSE:
                    ax.axhline(curve[M.TOP1].iloc[0], color=colors[method], linestyle=":", linewidth=1)
            ax.set(title=f"{dataset} / {arch}", xlabel=M.PARAM_PRUNING_RATE.label, ylabel=M.TOP1.label)
            where = f"accuracy vs pruning rate, {dataset} / {arch}"
            x = 100 * panel[M.PARAM_PRUNING_RATE]
            marked += clip_outliers(ax, panel, x, M.TOP1, colors, worse_is_high=False, where=where, fmt="{:.1f}")
        legend_below(fig, axes)
        fig.suptitle("Top-1 vs parameter pruning rate (mean over seeds, 95% t CI)")
        save_figure(fig, out_dir, name)
    return Drawn(marked) if marked else None


@report_figure(
    "drop_vs_macs.png",
    "Accuracy drop vs MAC reduction",
    "Top-1 drop vs the dense cell of the same seed, against MAC reduction (non-zero MACs for unstructured "
    "methods); circled points: the Pareto front (no other point has a larger reduction and a smaller drop).",
)
def drop_vs_macs(
    groups: list[GroupSummary], out_dir: Path, name: str = "drop_vs_macs.png", colors: dict[str, tuple] | None = None
) -> str | None:
    """Top-1 drop vs MAC reduction (group means), with each panel's Pareto front marked."""
    means = group_means(groups)
    needed = [M.TOP1_DROP, M.EFFECTIVE_MAC_REDUCTION]
    if means.empty or means[needed].dropna().empty:
        return "accuracy drop vs MAC reduction: no finished cell with both a top-1 drop and a MAC reduction"
    means = means.dropna(subset=needed).reset_index(drop=True)
    colors = colors or palette(means["method"])
    marked = []
    with sns.axes_style("whitegrid"):
        fig, axes, panels = pair_panels(means)
        for ax, dataset, arch, panel in panels:
            far = off_scale(panel[M.TOP1_DROP], worse_is_high=True)
            front = panel[pareto_front(panel)].sort_values(M.EFFECTIVE_MAC_REDUCTION)
            ax.step(
                front[M.EFFECTIVE_MAC_REDUCTION],
                front[M.TOP1_DROP],
                where="post",
                color="black",
                linewidth=1,
                label="Pareto front",
            )
            ax.scatter(
                front[M.EFFECTIVE_MAC_REDUCTION],
                front[M.TOP1_DROP],
                s=140,
                facecolors="none",
                edgecolors="black",
                linewidths=1.2,
            )
            for method, pts in sorted(panel[~far].groupby("method"), key=lambda kv: method_order(kv[0])):
                ax.scatter(pts[M.EFFECTIVE_MAC_REDUCTION], pts[M.TOP1_DROP], color=colors[method], label=method, s=36)
            ax.set(
                title=f"{dataset} / {arch}",
                xlabel=f"{M.EFFECTIVE_MAC_REDUCTION.label} (x; non-zero MACs for unstructured)",
                ylabel=f"{M.TOP1_DROP.label} vs dense",
            )
            where = f"accuracy drop vs MAC reduction, {dataset} / {arch}"
            x = panel[M.EFFECTIVE_MAC_REDUCTION]
            marked += clip_outliers(ax, panel, x, M.TOP1_DROP, colors, worse_is_high=True, where=where, fmt="{:.1f}")
        legend_below(fig, axes)
        off = "; ^: off the scale" if marked else ""
        fig.suptitle(f"Accuracy drop vs MAC reduction (means over seeds); circled: Pareto front{off}")
        save_figure(fig, out_dir, name)
    return Drawn(marked) if marked else None


@report_figure(
    "speedup_vs_macs.png",
    "Measured speed-up vs MAC reduction",
    "Measured CPU latency speed-up at batch 1 against MAC reduction; below the dashed y = x line, saved MACs "
    "did not turn into saved time.",
    data="cells",
)
def speedup_vs_macs(
    cells: pd.DataFrame, out_dir: Path, name: str = "speedup_vs_macs.png", colors: dict[str, tuple] | None = None
) -> str | None:
    """Measured batch-1 latency speed-up vs MAC reduction, every finished pruned cell, with y = x."""
    done = cells[(cells["status"] == "finished") & (cells["method"] != DENSE)]
    done = done.dropna(subset=[M.EFFECTIVE_MAC_REDUCTION, M.LATENCY_SPEEDUP_B1])
    if done.empty:
        return "latency speed-up vs MAC reduction: no finished pruned cell with both values"
    colors = colors or palette(done["method"])
    with sns.axes_style("whitegrid"):
        fig, axes, panels = pair_panels(done)
        for ax, dataset, arch, panel in panels:
            sns.scatterplot(
                data=panel,
                x=M.EFFECTIVE_MAC_REDUCTION,
                y=M.LATENCY_SPEEDUP_B1,
                hue="method",
                hue_order=[m for m in colors if m in set(panel["method"])],
                palette=colors,
                ax=ax,
                s=36,
            )
            top = max(panel[M.EFFECTIVE_MAC_REDUCTION].max(), panel[M.LATENCY_SPEEDUP_B1].max(), 1.0) * 1.05
            ax.plot([0, top], [0, top], linestyle="--", color="grey", linewidth=1, label="y = x")
            ax.set(
                xlim=(0, top),
                ylim=(0, top),
                title=f"{dataset} / {arch}",
                xlabel=f"{M.EFFECTIVE_MAC_REDUCTION.label} (x; non-zero MACs for unstructured)",
                ylabel=f"measured {M.LATENCY_SPEEDUP_B1.label} (x)",
            )
        legend_below(fig, axes)
        fig.suptitle("Measured latency speed-up vs MAC reduction (each point one cell)")
        save_figure(fig, out_dir, name)
    return None


def make_figures(cells: pd.DataFrame, groups: list[GroupSummary], out_dir: Path, root: Path) -> FigureSet:
    """Every figure into `out_dir`; `cells` is `stats.derive` of results.csv, `root` resolves result_dir."""
    out = FigureSet()
    colors = palette(cells["method"])  # one colour per method across every figure
    for spec in FIGURES:
        try:
            note = spec.draw(groups if spec.data == "groups" else cells, out_dir, spec.name, colors)
        except Exception as exc:  # noqa: BLE001 - a figure must never take the report down
            plt.close("all")
            note = f"{spec.title}: not drawn ({type(exc).__name__}: {exc})"
        if isinstance(note, Drawn):
            out.notes += note.notes
            note = None
        if note:
            out.notes.append(note)
        else:
            out.figures.append(Figure(spec.name, spec.title, spec.caption))
    try:
        figures, notes = search_dynamics(cells, out_dir, root)
    except Exception as exc:  # noqa: BLE001 - as above
        plt.close("all")
        figures, notes = [], [f"EDropout search dynamics: not drawn ({type(exc).__name__}: {exc})"]
    out.figures += figures
    out.notes += notes
    return out
