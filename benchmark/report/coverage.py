"""The report's sections on what EDropout could prune per architecture, and on cells with status notes."""

from __future__ import annotations

import pandas as pd

from benchmark.core import metrics as M
from benchmark.report.render import Block, Table, Text


def _column(cells: pd.DataFrame, name: str) -> pd.Series:
    return cells[name] if name in cells else pd.Series([None] * len(cells), index=cells.index, dtype=object)


def _text(value) -> str:
    return "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)


def coverage_blocks(cells: pd.DataFrame) -> list[Block]:
    """One row per (dataset, arch): EDropout's prunable and skipped unit groups, why, and the largest
    parameter pruning rate it could reach there (read from its finished cells)."""
    done = cells[(cells["status"] == "finished") & (cells["method"] == "edropout")]
    done = done[pd.to_numeric(_column(done, M.COVERAGE_PRUNABLE_GROUPS), errors="coerce").notna()]
    if done.empty:
        return [Text("No finished EDropout cell recorded its coverage.")]
    rows = []
    for (dataset, arch), group in done.groupby(["dataset", "arch"], sort=True):
        first = group.iloc[0]
        rate = pd.to_numeric(group[M.COVERAGE_MAX_RATE], errors="coerce").max()
        rows.append(
            [
                dataset,
                arch,
                f"{int(first[M.COVERAGE_PRUNABLE_GROUPS])}",
                f"{int(first[M.COVERAGE_SKIPPED_GROUPS])}",
                "-" if pd.isna(rate) else f"{rate:.1%}",
                _text(first.get(M.COVERAGE_SKIPPED)) or "none",
            ]
        )
    return [
        Text(
            "Unit groups are sets of coupled channels EDropout switches with one bit. A group is skipped when "
            "masking it would not equal removing it (reasons below); the largest reachable rate is the share "
            "of parameters that would go if every prunable unit did, so a rate near it means the search "
            "pruned nearly all it could."
        ),
        Table(
            ["dataset", "arch", "prunable groups", "skipped groups", "largest reachable param rate", "skipped: why"],
            rows,
        ),
    ]


def status_note_blocks(cells: pd.DataFrame) -> list[Block]:
    """Every finished cell with a status note (top-1 at chance, a search that never moved, skipped
    groups): its numbers are in the tables, and this says what to know before trusting them."""
    done = cells[cells["status"] == "finished"]
    notes = _column(done, M.STATUS_NOTES).map(_text)
    flagged = done[notes != ""]
    if flagged.empty:
        return [Text("No finished cell carries a status note (none at chance, no search that never moved).")]
    rows = [[row["cell"], _text(row[M.STATUS_NOTES])] for _, row in flagged.iterrows()]
    return [
        Text(f"{len(rows)} of {len(done)} finished cells carry a note; read their numbers with it."),
        Table(["cell", "note"], rows),
    ]


def latency_blocks(cells: pd.DataFrame) -> list[Block]:
    """Where each speed-up came from (the latency stage, alone, or the cell itself, beside training) and
    which ones are flagged untrusted (spread above the stage's target when its time cap was hit)."""
    done = cells[cells["status"] == "finished"]
    if done.empty or "latency_source" not in done:
        return [
            Text(
                "No latency-stage record in results.csv: every speed-up was timed inside its cell, beside "
                "other training, and is not to be trusted."
            )
        ]
    sources = done["latency_source"].fillna("none").value_counts()
    trusted = done.get("latency_trusted", pd.Series(False, index=done.index)).astype(str).str.lower() == "true"
    untrusted = done[~trusted]
    text = (
        f"Speed-ups of {len(done)} finished cells: "
        + ", ".join(f"{n} from {source}" for source, n in sources.items())
        + f"; {len(untrusted)} flagged untrusted."
    )
    blocks: list[Block] = [Text(text)]
    if not untrusted.empty:
        blocks.append(
            Table(
                ["cell", "latency source"],
                [[r["cell"], _text(r["latency_source"])] for _, r in untrusted.head(30).iterrows()],
            )
        )
    return blocks
