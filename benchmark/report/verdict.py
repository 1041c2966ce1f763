"""The report's verdict: one paragraph and one figure at its top, before any table.

It answers "does EDropout's claim hold here, and does its search beat the simplest alternatives?" from the
same statistics as the sections below it (`stats.control_comparisons`, `stats.paired_tests`: top-1, paired by
seed, 95% t interval, Holm within each family, MDE), but only on the cells of one budget protocol per
(dataset, arch): equal budget (config `train.budget` = 'equal') whenever a baseline ran at it, else the paper's.
A difference is "detected" when its Holm-adjusted p is below ALPHA; otherwise the text says "not detected at
n = ... seeds" with the minimum detectable difference, never "no difference".
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from benchmark.core import metrics as M
from benchmark.core.paths import PROJECT_ROOT
from benchmark.report.claims import setting_gaps
from benchmark.report.figures import Figure
from benchmark.report.inference import ALPHA
from benchmark.report.render import Block, Heading, Image, Text
from benchmark.report.stats import (
    DENSE,
    EDROPOUT,
    MATCHED,
    control_comparisons,
    edropout_points,
    paired_tests,
    summarize,
)
from benchmark.report.table import with_config_fields
from benchmark.report.verdict_figure import PAPER, blank, draw_verdict

BUDGET_FIELD, EQUAL = "train.budget", "equal"
FIGURE = "verdict.png"
TITLE = "Verdict: EDropout against its controls and the best baselines at its rate"
CONTROL_WORDS = {  # what each control takes away, as the conclusion names it
    "edropout_search_off": "a random mask (search off)",
    "edropout_search_noise": "the same search on random energies",
    "edropout_shuffled": "its widths at random positions",
    "edropout_scratch": "its architecture trained from scratch",
}
BEST_SHOWN = 2  # baselines named in the paragraph


def _at(name: str, point: str) -> str:
    return f"{name}@{point}" if point else name


def _budgets(cells: pd.DataFrame, root: Path) -> tuple[pd.Series, bool]:
    """Each cell's budget protocol ('paper' where not recorded) and whether any cell recorded one."""
    finished = cells["status"] == "finished"
    if BUDGET_FIELD not in cells and "budget" in cells and not (cells["budget"].map(blank) & finished).any():
        # every finished cell's result records its protocol (metrics.json `budget`, a results.csv column): the
        # same value as its config's train.budget, without reading every cell's metrics.json again
        cells = cells.assign(**{BUDGET_FIELD: cells["budget"].where(finished)})
    cells = with_config_fields(cells, [BUDGET_FIELD], root)
    raw = cells[BUDGET_FIELD] if BUDGET_FIELD in cells else pd.Series(None, index=cells.index, dtype=object)
    budget = raw.map(lambda v: PAPER if blank(v) else str(v).strip().lower())
    return budget, not raw.map(blank).all()


def _epochs(rows: pd.DataFrame) -> pd.Series:
    """Total training epochs per cell (dense + fine-tune for post-training methods), NaN if not recorded."""
    return _numbers(rows, M.TOTAL_TRAIN_EPOCHS).fillna(_numbers(rows, M.EPOCHS))


def _numbers(rows: pd.DataFrame, column: str) -> pd.Series:
    """A column as floats; all NaN when results.csv does not have it."""
    if column not in rows:
        return pd.Series(float("nan"), index=rows.index)
    return pd.to_numeric(rows[column], errors="coerce")


def _is_baseline_matched(cells: pd.DataFrame) -> pd.Series:
    points = edropout_points(cells).map(lambda p: _at(MATCHED, p))
    return (cells["operating_point"] == points) & ~cells["method"].isin([DENSE, EDROPOUT])


def headline_cells(cells: pd.DataFrame, budget: pd.Series) -> tuple[pd.DataFrame, dict]:
    """The cells the verdict uses and, per (dataset, arch), (protocol, baselines left out). Equal budget wins:
    where any baseline ran at EDropout's rate with `train.budget` = 'equal', baselines at another protocol are
    left out, and every other method keeps its equal-budget cells when it has some."""
    keep = pd.Series(True, index=cells.index)
    protocols = {}
    matched = _is_baseline_matched(cells)
    for (dataset, arch), pair in cells.groupby(["dataset", "arch"], sort=True):
        has_equal = (matched[pair.index] & (budget[pair.index] == EQUAL)).any()
        protocol = EQUAL if has_equal else PAPER
        left_out = []
        for (method, _), group in pair.groupby(["method", "operating_point"], sort=True):
            at_protocol = budget[group.index] == protocol
            if matched[group.index].all() and not at_protocol.all():
                keep[group.index] = at_protocol
                if not at_protocol.any():
                    left_out.append(method)
            elif at_protocol.any():
                keep[group.index] = at_protocol
        protocols[(dataset, arch)] = (protocol, left_out)
    return cells[keep], protocols


def reading(r) -> str:
    """Cautious words for one comparison (a row of `comparison_rows`, or a dict with its fields): detected after
    Holm, or not detected, with the minimum detectable difference when its interval covers 0."""
    mean, low, high, p_holm, mde = (_num(r[k]) for k in ("mean", "ci_low", "ci_high", "p_holm", "mde"))
    if mean is None or p_holm is None:
        return f"no test ({r['reason'] or 'no seed pair'})"
    if p_holm < ALPHA:
        return f"detected (Holm p {p_holm:.2g})"
    if low is not None and low <= 0 <= high:
        return f"not detected at n={int(r['n_pairs'])} seeds" + (f" (MDE {mde:.2f} pp)" if mde is not None else "")
    return f"not detected after Holm (Holm p {p_holm:.2g}; the unadjusted CI excludes 0)"


def _difference(r) -> str:
    mean, low, high = (_num(r[k]) for k in ("mean", "ci_low", "ci_high"))
    if mean is None:
        return "no difference measured"
    return f"{mean:+.2f} pp" + ("" if low is None else f" [{low:+.2f}, {high:+.2f}]")


def _noted(rows: pd.DataFrame) -> int:
    if M.STATUS_NOTES not in rows:
        return 0
    return int((~rows[M.STATUS_NOTES].map(blank)).sum())


def comparison_rows(cells: pd.DataFrame, protocols: dict) -> pd.DataFrame:
    """One row per comparison the figure plots: EDropout minus each control, each baseline at EDropout's rate
    minus EDropout (`cells` as `headline_cells` returns them)."""
    done = cells[cells["status"] == "finished"].assign(_point=edropout_points(cells))
    by_method = {key: group for key, group in done.groupby(["dataset", "arch", "_point", "method"], sort=False)}
    nothing = done.iloc[:0]

    def of(test, point: str, method: str) -> pd.DataFrame:
        return by_method.get((test.dataset, test.arch, point, method), nothing)

    def joined(frames: list[pd.DataFrame]) -> pd.DataFrame:
        return pd.concat([f for f in frames if len(f)] or [nothing])

    rows = []
    for c in control_comparisons(cells):
        point = c.method.partition("@")[2]
        used = joined([of(c, point, method) for method in dict.fromkeys([EDROPOUT, c.control])])
        rows.append(_row(c, "control", c.control, point, protocols, used, c.mean_difference))
    for t in paired_tests(cells).values():
        name, _, point = t.method.partition("@")
        side = of(t, point, name)
        used = joined([of(t, point, EDROPOUT), side[_is_baseline_matched(side)]])
        rows.append(_row(t, "baseline", name, point, protocols, used, t.mean_difference))
    columns = ["dataset", "arch", "point", "kind", "name", "mean", "ci_low", "ci_high", "p_holm", "family_size"]
    columns += ["mde", "n_pairs", "reason", "detected", "noted", "protocol", "rate", "epochs"]
    return pd.DataFrame(rows, columns=columns)


def _row(test, kind: str, name: str, point: str, protocols: dict, used: pd.DataFrame, mean) -> dict:
    side = used[used["method"] == name]
    fields = ("dataset", "arch", "ci_low", "ci_high", "p_holm", "family_size", "mde", "n_pairs", "reason")
    return {f: getattr(test, f) for f in fields} | {
        "point": point,
        "kind": kind,
        "name": name,
        "mean": mean,
        "detected": test.p_holm is not None and test.p_holm < ALPHA,
        "noted": _noted(used) > 0,
        "protocol": protocols.get((test.dataset, test.arch), (PAPER, []))[0],
        "rate": _numbers(side, M.PARAM_PRUNING_RATE).mean() if len(side) else None,
        "epochs": _epochs(side).median() if len(side) else None,
    }


def _num(value) -> float | None:
    return None if blank(value) else float(value)


def _setting(edropout: pd.DataFrame, claims: list) -> str:
    epochs = _epochs(edropout).dropna()
    text = f"{epochs.median():g} epochs" if not epochs.empty else "epochs not recorded"
    if not claims:
        return text + "; the paper's setting not checked (no claims)"
    gaps = [setting_gaps(claim, edropout) for claim in claims]
    if any((g == "").all() for g in gaps):
        return text + "; the paper's setting"
    closest = min(gaps, key=lambda g: len(", ".join(sorted(set(g)))))
    return text + f"; a different setting from the paper's: {'; '.join(sorted(set(closest)))}"


def _budget_text(protocol: str, left_out: list[str], own_epochs: float, base: pd.DataFrame) -> str:
    epochs = base["epochs"].dropna()
    span = "not recorded" if epochs.empty else "-".join(dict.fromkeys(f"{e:g}" for e in (epochs.min(), epochs.max())))
    own = "not recorded" if math.isnan(own_epochs) else f"{own_epochs:g}"
    numbers = f"total training epochs: EDropout {own}, baselines {span}"
    if protocol == EQUAL:
        text = f"at equal budget (train.budget=equal: {numbers})"
        return text + (f"; left out, run only at another budget: {', '.join(left_out)}" if left_out else "")
    if epochs.empty or math.isnan(own_epochs) or epochs.max() > own_epochs:
        return f"at the paper's (unequal) budget: post-training baselines got more epochs ({numbers})"
    return f"at the paper's budget protocol ({numbers})"


def _pair_text(key, edropout: pd.DataFrame, rows: pd.DataFrame, protocols: dict, claims: list) -> str:
    dataset, arch, point = key
    where = f"{dataset} / {arch}" + (f" at {point}" if point else "")
    top1 = summarize(_numbers(edropout, M.TOP1), bounds=M.TOP1.bounds)
    rate = _numbers(edropout, M.PARAM_PRUNING_RATE).mean()
    text = f"{where} ({_setting(edropout, claims)}): EDropout pruned "
    text += ("an unrecorded share" if math.isnan(rate) else f"{100 * rate:.1f}%") + " of parameters at "
    text += "unrecorded top-1" if top1.mean is None else f"{top1.mean:.2f}% top-1"
    text += f" ({top1.n} seeds" + ("" if not top1.has_interval else f", 95% CI [{top1.ci_low:.2f}, {top1.ci_high:.2f}]")
    controls, base = rows[rows["kind"] == "control"], rows[rows["kind"] == "baseline"]
    text += "). EDropout minus its controls: " + (
        "none ran"
        if controls.empty
        else "; ".join(f"{r['name']} {_difference(r)}, {reading(r)}" for _, r in controls.iterrows())
    )
    protocol, left_out = protocols.get((dataset, arch), (PAPER, []))
    own_epochs = _epochs(edropout).median() if not edropout.empty else float("nan")
    text += f". Baselines at EDropout's rate minus EDropout, {_budget_text(protocol, left_out, own_epochs, base)}"
    measured = base.dropna(subset=["mean"]).sort_values("mean", ascending=False)
    if measured.empty:
        return text + ": none measured."
    ahead = measured[measured["mean"] > 0]
    text += f": {len(ahead)} of {len(measured)} have a higher mean, {int(ahead['detected'].sum())} detected ahead "
    text += f"and {int((measured['detected'] & (measured['mean'] < 0)).sum())} detected behind after Holm; best: "
    return text + "; ".join(_best_text(r) for _, r in measured.head(BEST_SHOWN).iterrows()) + "."


def _best_text(r) -> str:
    rate = "" if blank(r["rate"]) else f" at {100 * r['rate']:.1f}%"
    mde = "" if blank(r["mde"]) else f", MDE {r['mde']:.2f} pp"
    holm = "" if blank(r["p_holm"]) else f", Holm p {r['p_holm']:.2g} (of {int(r['family_size'])})"
    epochs = "" if blank(r["epochs"]) else f", {r['epochs']:g} epochs"
    return f"{r['name']}{rate} {_difference(r)}{holm}{mde}{epochs}"


def _conclusion(key, rows: pd.DataFrame) -> str:
    """One clause per (dataset, arch): the search against each control, then the best baseline."""
    where = f"on {key[0]}/{key[1]}" + (f" at {key[2]}" if key[2] else "")
    parts = []
    for _, r in rows[rows["kind"] == "control"].iterrows():
        what = CONTROL_WORDS.get(r["name"], r["name"])
        behind = not blank(r["mean"]) and r["mean"] < 0 and r["detected"]
        claim = f"{what} beats EDropout's search" if behind else f"EDropout's search beats {what}"
        parts.append(f"{claim} here: {reading(r)}")
    if not parts:
        parts.append("no control ran, so the search itself is not tested against chance")
    base = rows[rows["kind"] == "baseline"].dropna(subset=["mean"]).sort_values("mean", ascending=False)
    if not base.empty and base["mean"].iloc[0] > 0:
        parts.append(f"a baseline ({base['name'].iloc[0]}) more accurate at EDropout's rate: {reading(base.iloc[0])}")
    elif not base.empty:
        behind = int((base["detected"] & (base["mean"] < 0)).sum())
        parts.append(f"no baseline's mean is above EDropout's (EDropout ahead detected: {behind} of {len(base)})")
    return f"{where}, " + "; ".join(parts)


def _missing(cells: pd.DataFrame, budget_recorded: bool) -> list[str]:
    done = cells[cells["status"] == "finished"]

    def absent(column: str) -> bool:
        return column not in done or done[column].map(blank).all()

    out = [f"{c} (no verdict on it)" for c in (M.TOP1, M.PARAM_PRUNING_RATE) if absent(c)]
    if "control_of" not in cells:
        out.append("control_of (controls not recognised)")
    if M.STATUS_NOTES not in cells:
        out.append("status_notes (cells not checked for notes)")
    if absent(M.TOTAL_TRAIN_EPOCHS) and absent(M.EPOCHS):
        out.append("epochs and total_train_epochs (budgets not compared)")
    if not budget_recorded:
        out.append(f"{BUDGET_FIELD} in any cell's config (every cell read as the paper's protocol)")
    return out


def verdict_paragraph(cells: pd.DataFrame, rows: pd.DataFrame, protocols: dict, claims: list) -> str:
    edropout = cells[(cells["status"] == "finished") & (cells["method"] == EDROPOUT)]
    edropout = edropout[edropout["operating_point"] == edropout_points(edropout).map(lambda p: _at(EDROPOUT, p))]
    if edropout.empty:
        return "No finished EDropout cell: there is nothing to conclude about EDropout."
    text = (
        "Does EDropout's claim hold here, and does its search beat the simplest alternatives? Top-1 differences "
        f"in percentage points, paired by seed, 95% CI; 'detected' means Holm-adjusted p < {ALPHA:g}. "
    )
    pairs, conclusions = [], []
    for key, own in edropout.groupby(["dataset", "arch", edropout_points(edropout)], sort=True):
        here = rows[(rows["dataset"] == key[0]) & (rows["arch"] == key[1]) & (rows["point"] == key[2])]
        pairs.append(_pair_text(key, own, here, protocols, claims))
        conclusions.append(_conclusion(key, here))
    text += " ".join(pairs)
    control = cells["control_of"].map(lambda v: not blank(v)) if "control_of" in cells else False
    used = cells[(cells["status"] == "finished") & (_is_baseline_matched(cells) | control)]
    used = pd.concat([edropout, used])
    if M.STATUS_NOTES in cells:
        text += f" {_noted(used)} of the {len(used)} finished cells compared here carry a status note (listed below)."
    return text + " Conclusion: " + "; ".join(conclusions) + "."


def verdict_blocks(
    cells: pd.DataFrame, figure_dir: Path, root: Path | None = None, claims: list | None = None
) -> tuple[list[Block], list[Figure]]:
    """The verdict section (heading, paragraph, figure or why none) and the figure it wrote into
    `figure_dir`; `cells` is `stats.derive` of results.csv, `claims` the paper's (for its setting)."""
    root = PROJECT_ROOT if root is None else Path(root)
    blocks: list[Block] = [Heading("Verdict")]
    if cells.empty:
        return blocks + [Text("No cells: nothing to conclude.")], []
    fields = sorted({field for claim in claims or [] for field, _ in claim.setting})
    cells = with_config_fields(cells, fields, root)
    budget, recorded = _budgets(cells, root)
    chosen, protocols = headline_cells(cells, budget)
    rows = comparison_rows(chosen, protocols)
    blocks.append(Text(verdict_paragraph(chosen, rows, protocols, claims or [])))
    missing = _missing(cells, recorded)
    if missing:
        blocks.append(Text("Not recorded in results.csv (an older table?): " + "; ".join(missing) + "."))
    plotted = rows.dropna(subset=["mean"])
    if plotted.empty:
        return blocks + [Text("No figure: no comparison of EDropout with a control or a baseline has a seed pair.")], []
    try:
        draw_verdict(rows, Path(figure_dir) / FIGURE)
    except Exception as exc:  # noqa: BLE001 - a figure must never take the report down
        plt.close("all")
        return blocks + [Text(f"No figure: not drawn ({type(exc).__name__}: {exc}).")], []
    left = len(rows) - len(plotted)
    caption = (
        "Per dataset/arch: EDropout minus each control (orange) and each baseline pruned to EDropout's rate minus "
        "EDropout (grey, best first; the best three labelled), top-1 in pp, paired by seed, 95% CI; filled = "
        "detected after Holm; '*' = a cell with a status note; budget protocol under each panel title."
        + (f" {left} comparison{'s' if left != 1 else ''} without a seed pair not drawn." if left else "")
    )
    return blocks + [Image(FIGURE, TITLE, caption)], [Figure(FIGURE, TITLE, caption)]
