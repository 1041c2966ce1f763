"""edropout_search_off: EDropout with its search switched off, a control of EDropout.

The first Bernoulli(p_init) state of EDropout's population is applied from the first step and
kept: no generations. Everything else is EDropout's own (the seed, p_init and so the same initial
state, the training budget and schedule, the shrink when EDropout's search would stop), so
EDropout minus this control, paired by seed, is what the energy-based search adds over a random
mask at about the same rate. Settings: EDropout's (`method_args`), except `search`.
"""

from __future__ import annotations

from baselines.edropout import register_control

edropout_search_off = register_control(__name__, "edropout_search_off", "off", "the search switched off")
