"""EDropout's search dynamics: per (dataset, arch) the best and mean energy, the kept fraction and the
population diversity per generation, one line per run (or the median and band per EDropout point)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns

from benchmark.report.figure_layout import Figure, panels_grid, save_figure
from benchmark.report.stats import EDROPOUT, edropout_points

CURVE_KEYS = ("step", "best_energy", "mean_energy", "kept_fraction")


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
    the convergence step marked (dotted). With more than MAX_CURVES runs, the median over the runs of each
    EDropout point with its interquartile band per generation instead (one line per run would be unreadable
    and costs a draw per run)."""
    done = cells[(cells["status"] == "finished") & (cells["method"] == EDROPOUT)]
    if done.empty:
        return [], ["EDropout search dynamics: no finished EDropout cell"]
    done = done.assign(_point=edropout_points(done))
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
                runs.append((row["seed"], row["_point"], curve, converged))
        if not runs:
            continue
        with_diversity = all(
            isinstance(c.get("diversity"), list) and len(c["diversity"]) == len(c["step"]) for _, _, c, _ in runs
        )
        name = f"search_{dataset}_{arch}.png"
        with sns.axes_style("whitegrid"):
            fig, axes = panels_grid(3 if with_diversity else 2)
            if len(runs) > MAX_CURVES:
                caption = _search_bands(axes, runs, with_diversity)
            else:
                caption = _search_runs(axes, runs, with_diversity)
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
            save_figure(fig, out_dir, name)
        caption = (
            f"EDropout search dynamics, {dataset} / {arch}, {len(runs)} seed{'s' if len(runs) != 1 else ''}" + caption
        )
        figures.append(Figure(name, f"EDropout search: {dataset} / {arch}", caption))
    if not figures:
        notes.append("EDropout search dynamics: no finished EDropout cell has a readable search_curve")
    return figures, notes


MAX_CURVES = 10  # EDropout runs per dataset/arch drawn one line each; above, a median and band per point


def _search_runs(axes, runs: list[tuple], with_diversity: bool) -> str:
    """One line per run (seed, with its EDropout point when there are several); returns the caption's tail."""
    several = len({point for _, point, _, _ in runs}) > 1
    colors = sns.color_palette("tab10", len(runs))
    unconverged = []
    for color, (seed, point, curve, converged) in zip(colors, runs):
        who = f"seed {seed}" + (f" {point}" if several and point else "")
        axes[0].plot(curve["step"], curve["best_energy"], color=color, label=f"{who} best")
        axes[0].plot(curve["step"], curve["mean_energy"], color=color, linestyle="--", alpha=0.7, label=f"{who} mean")
        axes[1].plot(curve["step"], curve["kept_fraction"], color=color, label=who)
        if with_diversity:
            axes[2].plot(curve["step"], curve["diversity"], color=color, label=who)
        if _is_step(converged):
            for ax in axes:
                ax.axvline(converged, color=color, linestyle=":", linewidth=1.2)
            at = int(np.argmin(np.abs(np.asarray(curve["step"], dtype=float) - converged)))
            axes[0].plot(curve["step"][at], curve["best_energy"][at], marker="X", color=color, markersize=9)
            axes[1].plot(curve["step"][at], curve["kept_fraction"][at], marker="X", color=color, markersize=9)
        else:
            unconverged.append(str(seed))
    if not unconverged:
        return ""
    return f"; no convergence step (the search ran to the end) for seed {', '.join(unconverged)}"


def _search_bands(axes, runs: list[tuple], with_diversity: bool) -> str:
    """Per EDropout point: the median over its runs at each step, the interquartile band, and the median
    convergence step; returns the caption's tail."""
    keys = ["best_energy", "mean_energy", "kept_fraction"] + (["diversity"] if with_diversity else [])
    panels = {"best_energy": 0, "mean_energy": 0, "kept_fraction": 1, "diversity": 2}
    by_point: dict[str, list[tuple]] = {}
    for run in runs:
        by_point.setdefault(run[1], []).append(run)
    colors = sns.color_palette("tab10", len(by_point))
    tail = []
    for color, (point, members) in zip(colors, sorted(by_point.items())):
        who = point or "EDropout"
        for key in keys:
            values = pd.DataFrame(
                {
                    i: pd.Series(curve[key], index=curve["step"], dtype=float)
                    for i, (_, _, curve, _) in enumerate(members)
                }
            )
            values = values.groupby(level=0).mean()  # a step recorded twice in one run counts once
            low, mid, high = (values.quantile(q, axis=1) for q in (0.25, 0.5, 0.75))
            dashed = key == "mean_energy"
            label = f"{who} {'mean' if dashed else 'best' if key == 'best_energy' else ''} median".replace("  ", " ")
            ax = axes[panels[key]]
            ax.plot(mid.index, mid, color=color, linestyle="--" if dashed else "-", label=label)
            if not dashed:
                ax.fill_between(mid.index, low, high, color=color, alpha=0.25, linewidth=0)
        steps = [float(c) for _, _, _, c in members if _is_step(c)]
        if steps:
            for ax in axes:
                ax.axvline(float(np.median(steps)), color=color, linestyle=":", linewidth=1.2)
        tail.append(
            f"{who}: {len(members)} runs, median convergence step "
            + (f"{np.median(steps):g} ({len(steps)} converged)" if steps else "none (no run converged)")
        )
    return (
        f"; more than {MAX_CURVES} runs, so per EDropout point the median over runs at each step with the "
        f"interquartile band (shaded) and the median convergence step (dotted); " + "; ".join(tail)
    )


def _is_step(value) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and not (isinstance(value, float) and math.isnan(value))
    )
