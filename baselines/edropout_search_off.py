"""edropout_search_off: EDropout with its search switched off, a control of EDropout.

The first Bernoulli(p_init) state of EDropout's population is applied from the first step and
kept: no generations. Everything else is EDropout's own (the seed, p_init and so the same initial
state, the training budget and schedule, the shrink when EDropout's search would stop), so
EDropout minus this control, paired by seed, is what the energy-based search adds over a random
mask at about the same rate. Settings: EDropout's (`method_args`), except `search`.
"""

from __future__ import annotations

from baselines.edropout import control_args, run_edropout
from benchmark.api import CellContext, MethodResult, register_method

NAME = "edropout_search_off"


@register_method(
    NAME,
    citation="control of EDropout (Salehinejad & Valaee, TNNLS 2022): the search switched off",
    granularity="structured",
    schedule="during_training",
    check_args=control_args(NAME, "off"),
    control_of="edropout",
)
def edropout_search_off(ctx: CellContext) -> MethodResult:
    return run_edropout(ctx, control_args(NAME, "off")(ctx.cfg.method_args))
