"""edropout_scratch: EDropout's final architecture trained from scratch, a control of EDropout.

Reads the final per-group unit counts of the EDropout cell with the same dataset, arch, seed and
settings (`kept_per_group`), builds that smaller network physically (the first units of each
group), re-initialises it and trains it for the same epochs with the same optimiser and schedule,
as in Liu et al., "Rethinking the Value of Network Pruning" (ICLR 2019). EDropout minus this
control, paired by seed, is what the weights EDropout trained while searching are worth over the
architecture it found. Settings: EDropout's (only `layout: group` with `shrink: true` can be built).
"""

from __future__ import annotations

from baselines.edropout import register_control, run_scratch

edropout_scratch = register_control(
    __name__,
    "edropout_scratch",
    "off",
    "its final architecture re-initialised and trained from scratch (Liu et al. 2019)",
    run=run_scratch,
    from_twin=("kept_per_group",),
)
