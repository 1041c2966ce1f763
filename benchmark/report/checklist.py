"""The reporting checklist of Blalock et al. 2020 ("What is the state of neural network pruning?"), computed
from the study's cells: each item met or not, with what the data shows.

Which methods count as random or magnitude baselines is read from the methods' declared tags
(results.csv's `tags` column), not from a list of names.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from benchmark.core import metrics as M
from benchmark.report.stats import DENSE, EDROPOUT

MIN_PAIRS, MIN_POINTS, MIN_SEEDS = 2, 5, 2


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

    items.append(
        ChecklistItem(
            f"at least {MIN_PAIRS} (dataset, architecture) pairs",
            len(pairs) >= MIN_PAIRS,
            f"{len(pairs)} pair{'s' if len(pairs) != 1 else ''} with finished cells"
            + (f": {_some(f'{d}/{a}' for d, a in pairs)}" if pairs else ""),
        )
    )

    if pruned.empty:
        met, detail = False, "no finished pruned cells"
    else:
        has_rate = pruned[M.PARAM_PRUNING_RATE].notna() | pruned[M.EFFECTIVE_MAC_REDUCTION].notna()
        has_speed = pruned[M.LATENCY_SPEEDUP_B1].notna()
        met = bool(has_rate.all() and has_speed.all())
        detail = (
            f"{int(has_rate.sum())}/{len(pruned)} pruned cells report compression (pruning rate or MAC "
            f"reduction), {int(has_speed.sum())}/{len(pruned)} a measured speed-up"
        )
    items.append(ChecklistItem("compression and speed-up both reported", met, detail))

    own_rate = pruned["method"].eq(EDROPOUT) | pruned.get("control_of", pd.Series("", index=pruned.index)).fillna(
        ""
    ).ne("")
    curves = pruned[~own_rate].groupby(["dataset", "arch", "method"])["operating_point"].nunique()
    short = [f"{m} on {d}/{a}: {n}" for (d, a, m), n in curves.items() if n < MIN_POINTS]
    if curves.empty:
        met, detail = False, "no finished baseline cells at a pruning rate"
    elif short:
        met, detail = False, f"fewer than {MIN_POINTS} operating points: {_some(short)}"
    else:
        met, detail = True, f"every baseline curve has {curves.min()}-{curves.max()} operating points"
    items.append(
        ChecklistItem(
            f"trade-off curves with at least {MIN_POINTS} operating points",
            met,
            detail + " (EDropout and its controls: one point per EDropout operating point, `edropout_points`)",
        )
    )

    seeds = done.groupby(["dataset", "arch", "method", "operating_point"])["seed"].nunique()
    few = [f"{m} at {p} on {d}/{a}: {n}" for (d, a, m, p), n in seeds.items() if n < MIN_SEEDS]
    if seeds.empty:
        met, detail = False, "no finished cells"
    elif few:
        met, detail = False, f"fewer than {MIN_SEEDS} finished seeds: {_some(few)}"
    else:
        met, detail = True, f"every result is a mean ± spread over {seeds.min()}-{seeds.max()} seeds"
    items.append(ChecklistItem(f"mean ± spread over runs (at least {MIN_SEEDS} seeds)", met, detail))

    randoms, magnitudes = methods_tagged(done, "random"), methods_tagged(done, "magnitude")
    items.append(
        ChecklistItem(
            "random and magnitude baselines present",
            bool(randoms and magnitudes),
            f"random: {_some(randoms) or 'none'}; magnitude: {_some(magnitudes) or 'none'} (finished cells)",
        )
    )
    return items


def methods_tagged(cells: pd.DataFrame, tag: str) -> list[str]:
    """The methods among `cells` that declare `tag` (results.csv's space-separated `tags` column)."""
    if "tags" not in cells:
        return []
    tagged = cells[cells["tags"].fillna("").astype(str).str.split().apply(lambda tags: tag in tags)]
    return sorted(set(tagged["method"]))
