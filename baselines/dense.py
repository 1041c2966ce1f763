"""dense: the unpruned reference every pruning method is measured against."""

from benchmark.methods import MethodResult, register_method


@register_method("dense", citation="reference network, no pruning", granularity="none", schedule="none")
def dense(ctx) -> MethodResult:
    ctx.train(ctx.model)
    return MethodResult(ctx.model)
