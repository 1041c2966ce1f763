"""edropout_search_noise: EDropout's search driven by random energies, a control of EDropout.

The same differential evolution (donors, mutation, crossover, selection, drawn exactly as in
EDropout with the same seed) with every state's energy replaced by a uniform random number, so
selection carries no information about the states. EDropout minus this control, paired by seed,
is what the energy adds over a population search that wanders at random (the population still
drifts, e.g. toward keep rate 0.5 under the mutation rule). Settings: EDropout's, except `search`.
"""

from __future__ import annotations

from baselines.edropout import register_control

edropout_search_noise = register_control(
    __name__, "edropout_search_noise", "noise", "the search driven by random energies"
)
