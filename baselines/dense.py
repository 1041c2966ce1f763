"""dense: the unpruned reference every pruning method is measured against."""

import time

from benchmark.methods import MethodResult, register_method


@register_method("dense", citation="reference network, no pruning", granularity="none", schedule="none")
def dense(ctx) -> MethodResult:
    start = time.perf_counter()
    ctx.train(ctx.model)
    ctx.store_dense(ctx.model, time.perf_counter() - start)  # post-training methods start from it
    return MethodResult(ctx.model)
