"""The report's statistics take shortcuts for speed (a large study has thousands of summaries): each must give
exactly the numbers of the scipy / statsmodels call it replaces."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.power import TTestPower

from benchmark.report.inference import CONFIDENCE, min_detectable_difference, summarize


@pytest.mark.parametrize("seed", range(5))
def test_summaries_equal_scipy_t_interval_bit_for_bit(seed):
    rng = np.random.default_rng(seed)
    for _ in range(200):
        n = int(rng.integers(2, 40))
        values = rng.normal(rng.uniform(-100, 100), rng.uniform(1e-3, 30), n)
        ours = summarize(values)
        low, high = stats.t.interval(CONFIDENCE, n - 1, loc=np.mean(values), scale=stats.sem(values))
        assert (ours.ci_low, ours.ci_high) == (float(low), float(high))
        assert ours.mean == float(np.mean(values)) and ours.std == float(np.std(values, ddof=1))


@pytest.mark.parametrize("n", [2, 3, 5, 25])
def test_the_minimum_detectable_difference_equals_statsmodels_solve_power(n):
    for sd in (0.5, 3.0, 12.25):
        effect = TTestPower().solve_power(effect_size=None, nobs=n, alpha=0.05, power=0.8, alternative="two-sided")
        assert min_detectable_difference(sd, n) == float(effect) * sd
