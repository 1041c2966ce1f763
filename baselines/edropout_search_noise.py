"""edropout_search_noise: EDropout's search driven by random energies, a control of EDropout.

The same differential evolution (donors, mutation, crossover, selection, drawn exactly as in
EDropout with the same seed) with every state's energy replaced by a uniform random number, so
selection carries no information about the states. EDropout minus this control, paired by seed,
is what the energy adds over a population search that wanders at random (the population still
drifts, e.g. toward keep rate 0.5 under the mutation rule). Settings: EDropout's, except `search`.
"""

from __future__ import annotations

from baselines.edropout import control_args, run_edropout
from benchmark.api import CellContext, MethodResult, register_method

NAME = "edropout_search_noise"


@register_method(
    NAME,
    citation="control of EDropout (Salehinejad & Valaee, TNNLS 2022): random energies",
    granularity="structured",
    schedule="during_training",
    check_args=control_args(NAME, "noise"),
    control_of="edropout",
)
def edropout_search_noise(ctx: CellContext) -> MethodResult:
    return run_edropout(ctx, control_args(NAME, "noise")(ctx.cfg.method_args))
