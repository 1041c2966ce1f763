"""The plugin API: everything a method file in `baselines/` (or a plugin folder) needs.

    from benchmark.api import CellContext, MethodResult, register_method

    @register_method("my_method", citation="Me et al. 2026", granularity="unstructured",
                     schedule="after_training", takes_sparsity=True, check_args=check)
    def my_method(ctx: CellContext) -> MethodResult: ...

`benchmark.cell.pruning` holds the shared protocols (post-training, at-initialisation) and the
pruning helpers most baselines build on.
"""

from benchmark.cell.context import CellContext
from benchmark.cell.plugins import register_method
from benchmark.cell.spec import GRANULARITIES, SCHEDULES, TAGS, TWIN_FROM, MethodResult, MethodSpec
from benchmark.cell.training import EpochStats, Hooks
from benchmark.core.errors import UserError

__all__ = [
    "GRANULARITIES",
    "SCHEDULES",
    "TAGS",
    "TWIN_FROM",
    "CellContext",
    "EpochStats",
    "Hooks",
    "MethodResult",
    "MethodSpec",
    "UserError",
    "register_method",
]
