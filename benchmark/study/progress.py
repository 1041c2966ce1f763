"""A study's progress: a bar on a terminal, and one line per finished cell with the elapsed time and
an ETA everywhere (DVC's log, CI)."""

from __future__ import annotations

import sys
import time
from typing import Any

from benchmark.study.cells import Cell


class Progress:
    """Study-level progress: a bar on a terminal, and one line per finished cell everywhere."""

    def __init__(self, stage: str, total: int, done: int, workers: int):
        from tqdm import tqdm

        self.stage, self.total, self.done, self.workers = stage, total, done, workers
        self.start = time.perf_counter()
        self.durations: list[float] = []
        self.bar = tqdm(
            total=total,
            initial=done,
            desc=f"{stage} cells",
            unit="cell",
            file=sys.stderr,
            disable=None,
            position=0,
            dynamic_ncols=True,
        )

    def eta(self, remaining: int) -> float | None:
        if not self.durations:
            return None
        return sum(self.durations) / len(self.durations) * remaining / min(self.workers, max(1, remaining))

    def cell_done(self, cell: Cell, result: dict[str, Any], remaining: int) -> None:
        self.done += 1
        self.durations.append(result.get("seconds", 0.0))
        self.bar.update(1)
        eta = self.eta(remaining)
        outcome = f"top-1 {result['top1']:.2f}%" if result["status"] == "finished" else f"FAILED: {result['error']}"
        line = (
            f"{self.stage} [{self.done}/{self.total}] {cell.label}: {outcome} ({result.get('seconds', 0):.0f}s)"
            f" | elapsed {clock(time.perf_counter() - self.start)}"
            f" ETA {clock(eta) if eta is not None else '?'}"
        )
        self.bar.write(line, file=sys.stderr)

    def close(self) -> None:
        self.bar.close()


def clock(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"
