"""dense: the unpruned reference every pruning method is measured against."""

import time

from benchmark.api import CellContext, MethodResult, register_method


@register_method(
    "dense", citation="reference network, no pruning", granularity="none", schedule="none", tags=["reference"]
)
def dense(ctx: CellContext) -> MethodResult:
    start = time.perf_counter()
    ctx.train(ctx.model)
    ctx.store_dense(ctx.model, time.perf_counter() - start)  # post-training methods start from it
    return MethodResult(ctx.model)
