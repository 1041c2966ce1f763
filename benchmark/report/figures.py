"""The report's figures (PNG, seaborn + matplotlib on the Agg backend). A figure without data is skipped
with a note; nothing here raises on missing or odd results."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from benchmark.core import metrics as M
from benchmark.report.stats import DENSE, EDROPOUT, GroupSummary, method_order, pareto_front

DPI = 110
CURVE_KEYS = ("step", "best_energy", "mean_energy", "kept_fraction")


@dataclass(frozen=True)
class Figure:
    name: str  # file name under figures/
    title: str
    caption: str


@dataclass(frozen=True)
class FigureSpec:
    """A figure of the report: `draw(data, out_dir, name, colors)` writes `out_dir/name` and returns None, or
    returns one line saying why it was not drawn. `data` is "groups" (seed summaries) or "cells" (every cell)."""

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


def _palette(methods) -> dict[str, tuple]:
    methods = sorted(set(methods), key=method_order)
    palette = "tab10" if len(methods) <= 10 else "tab20"  # no two methods share a colour
    return dict(zip(methods, sns.color_palette(palette, max(len(methods), 1))))


def _legend(fig, axes) -> None:
    """One legend for the whole figure, outside the panels (per-panel legends hide the data)."""
    entries: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    if entries:
        fig.legend(list(entries.values()), list(entries), loc="outside right upper", fontsize="small")


def _panels(n: int, width: float = 4.6, height: float = 3.8):
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False, layout="constrained")
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def _pair_panels(frame: pd.DataFrame):
    """One panel per (dataset, arch) of `frame`: the figure, its axes and (ax, dataset, arch, rows)."""
    pairs = sorted(set(zip(frame["dataset"], frame["arch"])))
    fig, axes = _panels(len(pairs))
    return (
        fig,
        axes,
        [(ax, d, a, frame[(frame["dataset"] == d) & (frame["arch"] == a)]) for ax, (d, a) in zip(axes, pairs)],
    )


def _save(fig, out_dir: Path, name: str) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_dir / name, dpi=DPI, bbox_inches="tight")
    plt.close(fig)


def _means(groups: list[GroupSummary]) -> pd.DataFrame:
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
    means = _means(groups)
    if means.empty or means[[M.TOP1, M.PARAM_PRUNING_RATE]].dropna().empty:
        return "accuracy vs pruning rate: no finished cell with top-1 and a pruning rate"
    means = means.dropna(subset=[M.TOP1, M.PARAM_PRUNING_RATE])
    colors = colors or _palette(means["method"])
    with sns.axes_style("whitegrid"):
        fig, axes, panels = _pair_panels(means)
        for ax, dataset, arch, panel in panels:
            for method, curve in sorted(panel.groupby("method"), key=lambda kv: method_order(kv[0])):
                curve = curve.sort_values(M.PARAM_PRUNING_RATE)
                x = 100 * curve[M.PARAM_PRUNING_RATE]
                low, high = curve["top1_low"].fillna(curve[M.TOP1]), curve["top1_high"].fillna(curve[M.TOP1])
                ax.plot(x, curve[M.TOP1], marker="o", color=colors[method], label=method)
                if len(curve) > 1:
                    ax.fill_between(x, low, high, color=colors[method], alpha=0.2, linewidth=0)
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
        _legend(fig, axes)
        fig.suptitle("Top-1 vs parameter pruning rate (mean over seeds, 95% t CI)")
        _save(fig, out_dir, name)
    return None


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
    means = _means(groups)
    needed = [M.TOP1_DROP, M.EFFECTIVE_MAC_REDUCTION]
    if means.empty or means[needed].dropna().empty:
        return "accuracy drop vs MAC reduction: no finished cell with both a top-1 drop and a MAC reduction"
    means = means.dropna(subset=needed).reset_index(drop=True)
    colors = colors or _palette(means["method"])
    with sns.axes_style("whitegrid"):
        fig, axes, panels = _pair_panels(means)
        for ax, dataset, arch, panel in panels:
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
            for method, pts in sorted(panel.groupby("method"), key=lambda kv: method_order(kv[0])):
                ax.scatter(pts[M.EFFECTIVE_MAC_REDUCTION], pts[M.TOP1_DROP], color=colors[method], label=method, s=36)
            ax.set(
                title=f"{dataset} / {arch}",
                xlabel=f"{M.EFFECTIVE_MAC_REDUCTION.label} (x; non-zero MACs for unstructured)",
                ylabel=f"{M.TOP1_DROP.label} vs dense",
            )
        _legend(fig, axes)
        fig.suptitle("Accuracy drop vs MAC reduction (means over seeds); circled: Pareto front")
        _save(fig, out_dir, name)
    return None


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
    colors = colors or _palette(done["method"])
    with sns.axes_style("whitegrid"):
        fig, axes, panels = _pair_panels(done)
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
        _legend(fig, axes)
        fig.suptitle("Measured latency speed-up vs MAC reduction (each point one cell)")
        _save(fig, out_dir, name)
    return None


def _curve(path: Path) -> tuple[dict | None, object, str]:
    """(search_curve, converged_step, problem) of one EDropout cell's metrics.json."""
    try:
        metrics = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return None, None, f"cannot read {path}: {type(exc).__name__}"
    curve = metrics.get("search_curve")
    if not isinstance(curve, dict) or any(not isinstance(curve.get(k), list) for k in CURVE_KEYS):
        return None, None, f"{path} has no search_curve with {', '.join(CURVE_KEYS)}"
    lengths = {len(curve[k]) for k in CURVE_KEYS}
    if len(lengths) != 1 or lengths == {0}:
        return None, None, f"{path}: search_curve lists are empty or of different lengths"
    return curve, metrics.get("converged_step"), ""


def search_dynamics(cells: pd.DataFrame, out_dir: Path, root: Path) -> tuple[list[Figure], list[str]]:
    """Per dataset/arch: EDropout's best and mean energy and kept fraction per generation, every seed,
    the convergence step marked (dotted)."""
    done = cells[(cells["status"] == "finished") & (cells["method"] == EDROPOUT)]
    if done.empty:
        return [], ["EDropout search dynamics: no finished EDropout cell"]
    figures, notes = [], []
    for (dataset, arch), group in done.groupby(["dataset", "arch"]):
        runs = []
        for _, row in group.sort_values("seed").iterrows():
            if not row["result_dir"]:
                notes.append(f"search dynamics, {row['cell']}: no result_dir in results.csv")
                continue
            curve, converged, problem = _curve(root / row["result_dir"] / "metrics.json")
            problem = problem.replace(f"{root}/", "")  # the report names cells relative to the project
            if problem:
                notes.append(f"search dynamics, {row['cell']}: {problem}")
            else:
                runs.append((row["seed"], curve, converged))
        if not runs:
            continue
        with_diversity = all(
            isinstance(c.get("diversity"), list) and len(c["diversity"]) == len(c["step"]) for _, c, _ in runs
        )
        colors = sns.color_palette("tab10", len(runs))
        with sns.axes_style("whitegrid"):
            fig, axes = _panels(3 if with_diversity else 2)
            unconverged = []
            for color, (seed, curve, converged) in zip(colors, runs):
                axes[0].plot(curve["step"], curve["best_energy"], color=color, label=f"seed {seed} best")
                axes[0].plot(
                    curve["step"],
                    curve["mean_energy"],
                    color=color,
                    linestyle="--",
                    alpha=0.7,
                    label=f"seed {seed} mean",
                )
                axes[1].plot(curve["step"], curve["kept_fraction"], color=color, label=f"seed {seed}")
                if with_diversity:
                    axes[2].plot(curve["step"], curve["diversity"], color=color, label=f"seed {seed}")
                if isinstance(converged, (int, float)) and not isinstance(converged, bool):
                    for ax in axes:
                        ax.axvline(converged, color=color, linestyle=":", linewidth=1.2)
                    at = int(np.argmin(np.abs(np.asarray(curve["step"], dtype=float) - converged)))
                    axes[0].plot(curve["step"][at], curve["best_energy"][at], marker="X", color=color, markersize=9)
                    axes[1].plot(curve["step"][at], curve["kept_fraction"][at], marker="X", color=color, markersize=9)
                else:
                    unconverged.append(str(seed))
            axes[0].set(title="energy (lower is better)", xlabel="step (generation)", ylabel="energy")
            axes[1].set(
                title="fraction of units kept (best state)",
                xlabel="step (generation)",
                ylabel="kept fraction",
                ylim=(0, 1.02),
            )
            if with_diversity:
                axes[2].set(title="population diversity", xlabel="step (generation)", ylabel="mean Hamming distance")
            for ax in axes:
                ax.legend(fontsize="x-small")
            fig.suptitle(f"EDropout search on {dataset} / {arch} (X and dotted line: convergence step)")
            name = f"search_{dataset}_{arch}.png"
            _save(fig, out_dir, name)
        caption = f"EDropout search dynamics, {dataset} / {arch}, {len(runs)} seed{'s' if len(runs) != 1 else ''}"
        if unconverged:
            caption += f"; no convergence step (the search ran to the end) for seed {', '.join(unconverged)}"
        figures.append(Figure(name, f"EDropout search: {dataset} / {arch}", caption))
    if not figures:
        notes.append("EDropout search dynamics: no finished EDropout cell has a readable search_curve")
    return figures, notes


def make_figures(cells: pd.DataFrame, groups: list[GroupSummary], out_dir: Path, root: Path) -> FigureSet:
    """Every figure into `out_dir`; `cells` is `stats.derive` of results.csv, `root` resolves result_dir."""
    out = FigureSet()
    colors = _palette(cells["method"])  # one colour per method across every figure
    for spec in FIGURES:
        try:
            note = spec.draw(groups if spec.data == "groups" else cells, out_dir, spec.name, colors)
        except Exception as exc:  # noqa: BLE001 - a figure must never take the report down
            plt.close("all")
            note = f"{spec.title}: not drawn ({type(exc).__name__}: {exc})"
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
