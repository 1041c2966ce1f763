"""The report's section on a method against its controls (EDropout minus search_off / search_noise)."""

from __future__ import annotations

import pandas as pd

from benchmark.report.render import Block, Table, Text
from benchmark.report.stats import control_comparisons


def _fmt(value: float | None, fmt: str = "{:+.2f}") -> str:
    return "-" if value is None else fmt.format(value)


def controls_blocks(cells: pd.DataFrame) -> list[Block]:
    """EDropout (or any method with registered controls) minus each control, paired by seed."""
    rows = []
    for c in control_comparisons(cells):
        interval = "-" if c.ci_low is None else f"[{c.ci_low:+.2f}, {c.ci_high:+.2f}]"
        rates = f"{_fmt(c.method_rate, '{:.3f}')} / {_fmt(c.control_rate, '{:.3f}')}"
        p_value = f"{c.p_value:.3g}" if c.p_value is not None else f"n/a: {c.reason}" if c.reason else "-"
        holm = "-" if c.p_holm is None else f"{c.p_holm:.3g} (of {c.family_size})"
        rows.append(
            [
                c.dataset,
                c.arch,
                f"{c.method} - {c.control}",
                str(c.n_pairs),
                _fmt(c.mean_difference),
                interval,
                _fmt(c.mde, "{:.2f}"),
                p_value,
                holm,
                rates,
            ]
        )
    if not rows:
        return [
            Text(
                "No control of EDropout ran (add edropout_search_off, edropout_search_noise, edropout_shuffled "
                "and edropout_scratch to the profile's methods): nothing here separates its search from chance."
            )
        ]
    return [
        Text(
            "Each control is EDropout with one thing taken away (same seed, p_init, budget and schedule): "
            "`search_off` keeps the first random state, `search_noise` runs the same evolution on random "
            "energies, `shuffled` keeps EDropout's final per-group widths at random positions, `scratch` trains "
            "EDropout's final architecture from a fresh initialisation. A difference whose interval covers 0 "
            "means no effect was detected at this number of seeds; MDE is the smallest difference this many "
            "pairs would detect (power 0.8, alpha 0.05) at the observed spread; Holm corrects p over the "
            "controls of one arch."
        ),
        Table(
            [
                "dataset",
                "arch",
                "top-1 difference",
                "seed pairs",
                "mean (pp)",
                "95% CI (pp)",
                "MDE (pp)",
                "p (paired t)",
                "p (Holm)",
                "param pruning rate (method / control)",
            ],
            rows,
        ),
    ]
