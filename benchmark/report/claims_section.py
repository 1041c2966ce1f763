"""The report's section on the paper's claims: the verdicts, measured ones first, then what could not run."""

from __future__ import annotations

from collections import defaultdict

from benchmark.report.claims import (
    FAILS_HERE,
    HOLDS_HERE,
    NOT_REPRODUCED,
    NOT_RUN,
    REPRODUCED,
    SATURATED,
    VERDICTS,
    ClaimResult,
)
from benchmark.report.render import Block, Table, Text

MEANING = (
    f"'{REPRODUCED}' / '{NOT_REPRODUCED}' only for cells in the paper's setting (its datasets and models, "
    f"trained for its epochs with its optimizer: claims.yaml `defaults.setting`); '{HOLDS_HERE}' / '{FAILS_HERE}' "
    "say whether the claim holds in this study, not whether the paper's number is right; "
    f"'{SATURATED}': every method scores near 100% on that accuracy, so it cannot separate them. Value claims are "
    "decided on the mean (the reason says what the 95% CI adds); comparative claims on the mean paired difference, "
    "with its CI, Holm-adjusted p-value and minimum detectable difference (MDE) in the reason."
)


def verdict_counts(results: list[ClaimResult]) -> dict[str, int]:
    return {v: sum(r.verdict == v for r in results) for v in VERDICTS}


def claims_blocks(results: list[ClaimResult]) -> list[Block]:
    counts = verdict_counts(results)
    summary = f"{len(results)} claims: " + ", ".join(f"{n} {v}" for v, n in counts.items()) + ". " + MEANING
    blocks: list[Block] = [Text(summary)]
    measured = [r for r in results if r.verdict != NOT_RUN]
    if measured:
        blocks.append(
            Table(
                ["claim", "source", "claim says", "measured", "setting", "verdict", "reason"],
                [
                    [r.claim.text, r.claim.source, r.claim.expected, r.measured_text, r.setting, r.verdict, r.reason]
                    for r in measured
                ],
            )
        )
    not_run: dict[tuple[str, str], list[ClaimResult]] = defaultdict(list)
    for r in results:
        if r.verdict == NOT_RUN:
            not_run[(r.claim.source, r.reason)].append(r)
    if not_run:
        rows = []
        for (source, reason), group in not_run.items():
            models = list(dict.fromkeys(r.claim.paper_arch for r in group if r.claim.paper_arch))
            ids = f"{len(group)} claim{'s' if len(group) != 1 else ''}" + (
                f" ({', '.join(models)})" if models else f": {'; '.join(r.claim.text for r in group)}"
            )
            rows.append([source, ids, NOT_RUN, reason])
        blocks.append(
            Table(
                ["source", "claims", "verdict", "reason"],
                rows,
                caption="Claims the study could not check, grouped by source and reason:",
            )
        )
    return blocks
