"""Deprecated: moved to `benchmark.cell.pruning` (this name keeps plugins written for 0.1 working)."""

import warnings

from benchmark.cell.pruning import *  # noqa: F403

warnings.warn("benchmark.pruning is deprecated: import from benchmark.cell.pruning", DeprecationWarning, stacklevel=2)
