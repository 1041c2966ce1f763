"""The report's section on every baseline against EDropout at EDropout's rate, paired by seed (effect sizes)."""

from __future__ import annotations

from collections import defaultdict

from benchmark.core import metrics as M
from benchmark.report.inference import ALPHA, HOLM_NAME, MDE_NAME
from benchmark.report.render import Block, Heading, Table, Text
from benchmark.report.stats import TTEST_NAME, PairedTest

COLUMNS = [
    "baseline (at EDropout's rate)",
    "seed pairs",
    "baseline - EDropout (pp)",
    "95% CI (pp)",
    "SD of differences (pp)",
    "MDE (pp)",
    "p (paired t)",
    "p (Holm)",
    "reading",
]


def _fmt(value: float | None, fmt: str = "{:+.2f}") -> str:
    return "-" if value is None else fmt.format(value)


def reading(test: PairedTest) -> str:
    """What one comparison says, in words: a difference Holm keeps, none detected (and whether it could be)."""
    if test.p_value is None:
        return f"no test: {test.reason}"
    if test.p_holm is not None and test.p_holm < ALPHA:
        return "baseline better (Holm)" if test.mean_difference > 0 else "EDropout better (Holm)"
    if test.mde is not None and abs(test.mean_difference) < test.mde:
        return "no difference detected; |mean| below the MDE"
    return "no difference detected after Holm"


def _row(test: PairedTest) -> list[str]:
    interval = "-" if test.ci_low is None else f"[{test.ci_low:+.2f}, {test.ci_high:+.2f}]"
    return [
        test.method,
        str(test.n_pairs),
        _fmt(test.mean_difference),
        interval,
        _fmt(test.sd_difference, "{:.2f}"),
        _fmt(test.mde, "{:.2f}"),
        _fmt(test.p_value, "{:.3g}"),
        "-" if test.p_holm is None else f"{test.p_holm:.3g} (of {test.family_size})",
        reading(test),
    ]


def comparisons_blocks(tests: dict[tuple[str, str, str], PairedTest], metric: str = M.TOP1) -> list[Block]:
    """One table per (dataset, arch): each baseline minus EDropout with its CI, MDE and Holm-adjusted p."""
    if not tests:
        return [Text("No baseline ran at EDropout's rate ('matched'): nothing to compare EDropout with.")]
    by_pair: dict[tuple[str, str], list[PairedTest]] = defaultdict(list)
    for test in tests.values():
        by_pair[(test.dataset, test.arch)].append(test)
    label = M.get(metric).label
    blocks: list[Block] = [
        Text(
            f"Effect sizes: {label} of each baseline pruned to EDropout's rate on the same seed ('matched') minus "
            "EDropout's own cell, paired by seed; positive means the baseline is more accurate. 95% CI and p (each "
            f"comparison on its own, before the correction): {TTEST_NAME}. p (Holm): {HOLM_NAME} over the "
            "baselines of one table (one family per dataset, architecture and metric; 'of m' = the p-values in "
            "it). MDE: the smallest true difference this study detects with 80% power at its number of seed pairs "
            f"and the observed SD of the differences ({MDE_NAME}), before the Holm correction; a difference well "
            "below it can neither be shown nor ruled out."
        )
    ]
    for (dataset, arch), rows in sorted(by_pair.items()):
        rows.sort(key=lambda t: t.method)
        blocks += [Heading(f"{dataset} / {arch}", 3), Table(COLUMNS, [_row(t) for t in rows])]
    return blocks
