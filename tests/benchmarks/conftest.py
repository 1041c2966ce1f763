"""The speed suite's shared parts: pairs of an optimised path and its reference, ratios with floors.

Each group of benchmarks times a reference (e.g. one state at a time) and its optimised path (all states
in one batched pass) in the same session, reference first; the optimised path's test computes the ratio of
their best times, stores it with its floor, the issue's target and the machine in `benchmark.extra_info`,
and fails when the ratio breaks the floor. Best (minimum) time over rounds: on a shared machine noise only
ever adds time.

`make test` runs these files once with `--benchmark-disable` (and pytest-xdist disables them anyway): every
path runs once, nothing is timed, no ratio is checked. `make bench` times them.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field

import pytest
import torch


def machine() -> dict[str, object]:
    """What a timing depends on: the CPU, the cores this process may use, torch's threads and versions."""
    import timm

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "python": platform.python_version(),
    }


@dataclass
class Floor:
    """A bound on a ratio. `kind` 'speedup' (reference / optimised, must be >= `floor`) or 'cost'
    (optimised / reference, must be <= `floor`); `target` is what the issue asks, `why` says why the floor
    differs from it (if it does)."""

    floor: float
    target: str
    why: str
    kind: str = "speedup"

    def holds(self, ratio: float) -> bool:
        return ratio >= self.floor if self.kind == "speedup" else ratio <= self.floor


@dataclass
class Pairs:
    """Best seconds of every benchmark of this session, by (group, name), for the ratios."""

    best: dict[tuple[str, str], float] = field(default_factory=dict)

    def time(self, benchmark, group: str, name: str, fn, rounds: int, warmup: int = 1):
        """Benchmark `fn` (`rounds` timed calls after `warmup` untimed ones) and remember its best time."""
        benchmark.group = group
        benchmark.extra_info.update(machine())
        result = benchmark.pedantic(fn, rounds=rounds, warmup_rounds=warmup, iterations=1)
        if benchmark.enabled and benchmark.stats is not None:
            self.best[(group, name)] = benchmark.stats.stats.min
        return result

    def check(self, benchmark, group: str, name: str, reference: str, bound: Floor, label: str = "ratio") -> None:
        """Store the ratio of `name` to `reference` (best times) and fail when it breaks `bound`."""
        info = benchmark.extra_info
        info[f"{label}_target"], info[f"{label}_floor"], info[f"{label}_why"] = bound.target, bound.floor, bound.why
        info[f"{label}_kind"] = bound.kind
        if not benchmark.enabled:
            return  # make test: run once, untimed
        ours, theirs = self.best.get((group, name)), self.best.get((group, reference))
        if ours is None or theirs is None:
            info[label] = None
            info[f"{label}_note"] = f"{reference!r} was not timed in this session (deselected?): no ratio"
            return
        ratio = theirs / ours if bound.kind == "speedup" else ours / theirs
        info[label] = round(ratio, 3)
        what = f"{reference} / {name}" if bound.kind == "speedup" else f"{name} / {reference}"
        sign = ">=" if bound.kind == "speedup" else "<="
        assert bound.holds(ratio), (
            f"{group}: {what} = {ratio:.2f}, floor {sign} {bound.floor} broken (target {bound.target}); "
            f"best {theirs * 1e3:.1f} ms vs {ours * 1e3:.1f} ms"
        )


@pytest.fixture(scope="session")
def pairs() -> Pairs:
    return Pairs()


@pytest.fixture(autouse=True)
def _cell_threads():
    """Each benchmark runs with the torch threads a study's cell trains with (`train.threads`, default 1), so
    the numbers describe the study; seeded, so every run times the same states."""
    from benchmark.cell.measure import torch_threads
    from benchmark.core.config import RunConfig

    torch.manual_seed(0)
    with torch_threads(RunConfig().train.threads):
        yield
