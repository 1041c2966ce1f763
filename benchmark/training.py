"""Deprecated: moved to `benchmark.cell.training`; `Hooks` is in `benchmark.api` (keeps 0.1 plugins working)."""

import warnings

from benchmark.cell.training import *  # noqa: F403

warnings.warn(
    "benchmark.training is deprecated: import from benchmark.api or benchmark.cell.training",
    DeprecationWarning,
    stacklevel=2,
)
