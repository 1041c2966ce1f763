"""edropout_shuffled: EDropout's final per-group unit counts at shuffled positions, a control of EDropout.

Reads the final state of the EDropout cell with the same dataset, arch, seed and settings (its
`kept_per_group`), draws a state with exactly those counts per unit group at random positions
(from the seed), and trains with it frozen from the first step, like `edropout_search_off`:
same budget, schedule and shrink. EDropout minus this control, paired by seed, is what the search
adds beyond the layer widths it ends with, i.e. whether *which* units it keeps matters. Settings:
EDropout's, except `search` (and `kept_per_group`, which the harness fills in).
"""

from __future__ import annotations

from baselines.edropout import register_control

edropout_shuffled = register_control(
    __name__,
    "edropout_shuffled",
    "off",
    "its final per-group unit counts, positions shuffled",
    from_twin=("kept_per_group",),
)
