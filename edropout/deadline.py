"""A wall-time limit around torch-pruning's dependency analysis.

On some architectures (timm's CoAtNet and MaxViT: relative-position attention with window
partitions) torch-pruning's group search revisits the same layers with ever new index mappings
and never ends. A caller that analyses a network before training wraps the analysis in
`time_limit(seconds)` and turns the `AnalysisTimeout` into a one-line refusal, instead of a
study that hangs without a word.

The limit is a SIGALRM timer, so it applies in a process's main thread (where cells run, in
every backend); in another thread it is not armed and the analysis runs unbounded. An outer
timer (e.g. a per-cell limit set by the caller) is saved and re-armed with its remaining time.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

ANALYSIS_SECONDS = 60.0
"""Default limit: DenseNet-121, the slowest family that finishes, needs about 6 s on a 2-core CPU."""


class AnalysisTimeout(Exception):
    """The wrapped analysis ran past its limit."""


def _can_arm() -> bool:
    return hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()


@contextmanager
def time_limit(seconds: float | None, what: str = "torch-pruning's dependency analysis") -> Iterator[None]:
    """Raise `AnalysisTimeout` in the block once it has run `seconds` of wall time (None: no limit)."""
    if seconds is None or seconds <= 0 or not _can_arm():
        yield
        return

    def expired(signum, frame):
        raise AnalysisTimeout(f"{what} did not finish within {seconds:g} s")

    start = time.monotonic()
    previous_handler = signal.signal(signal.SIGALRM, expired)
    outer_left, outer_interval = signal.setitimer(signal.ITIMER_REAL, 0)
    if outer_left and outer_left < seconds:  # an outer timer that fires first keeps its meaning
        signal.signal(signal.SIGALRM, previous_handler)
        signal.setitimer(signal.ITIMER_REAL, outer_left, outer_interval)
        yield
        return
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous_handler)
        if outer_left:
            left = max(outer_left - (time.monotonic() - start), 1e-3)
            signal.setitimer(signal.ITIMER_REAL, left, outer_interval)
