"""The report's statistics against statsmodels, scipy and hand values: Holm, paired-difference intervals, the
minimum detectable difference, and intervals that stay inside a metric's range."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower

from benchmark.core import metrics as M
from benchmark.report.inference import holm, min_detectable_difference, paired_difference, summarize
from benchmark.report.stats import control_comparisons, derive, group_summaries, paired_tests

# --- Holm ----------------------------------------------------------------------------------------------------


def test_holm_matches_statsmodels_and_the_hand_computation():
    p = [0.01, 0.04, 0.03, 0.005]
    # by hand: sorted 0.005 x 4 = 0.02, 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, 0.04 x 1 = 0.04 -> max so far 0.06
    assert holm(p) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm(p) == pytest.approx(list(multipletests(p, method="holm")[1]))
    assert holm([0.2, 0.9]) == pytest.approx([0.4, 0.9])  # capped at 1 and monotone
    # a comparison without a p-value is not part of the family
    assert holm([None, 0.01, None, 0.04]) == [None, pytest.approx(0.02), None, pytest.approx(0.04)]
    assert holm([]) == [] and holm([None]) == [None]


SEEDS = (0, 1, 2, 3)
EDROPOUT_TOP1 = [90.0, 91.0, 89.5, 90.5]
# (dataset, arch) -> baseline -> top-1 minus EDropout's, per seed
OFFSETS = {
    ("d1", "a"): {"b1": [1.0, 1.2, 0.9, 1.1], "b2": [-0.5, 0.4, -0.2, 0.1], "b3": [2.0, 0.5, 1.5, 3.0]},
    ("d2", "a"): {"b1": [0.3, -0.1, 0.2, 0.0], "b2": [0.7, 0.9, 0.6, 1.0]},
}


def _cell(dataset, arch, method, point, seed, top1, **extra) -> dict:
    return {
        "cell": f"{method}/{dataset}/{arch}/seed{seed}/{point}",
        "dataset": dataset,
        "arch": arch,
        "method": method,
        "operating_point": point,
        "seed": seed,
        "status": "finished",
        "granularity": "structured",
        "top1": top1,
        "top5": 100.0,
        "param_pruning_rate": 0.5,
        **extra,
    }


def _family_table() -> pd.DataFrame:
    rows = []
    for (dataset, arch), baselines in OFFSETS.items():
        for seed, top1 in zip(SEEDS, EDROPOUT_TOP1, strict=True):
            rows.append(_cell(dataset, arch, "dense", "dense", seed, top1 + 2))
            rows.append(_cell(dataset, arch, "edropout", "edropout", seed, top1))
            for method, offsets in baselines.items():
                rows.append(_cell(dataset, arch, method, "matched", seed, top1 + offsets[seed]))
    return derive(pd.DataFrame(rows))


def test_paired_tests_are_holm_corrected_within_each_dataset_and_arch():
    tests = paired_tests(_family_table())
    for (dataset, arch), baselines in OFFSETS.items():
        family = [tests[(dataset, arch, m)] for m in sorted(baselines)]
        raw = [stats.ttest_rel(np.array(EDROPOUT_TOP1) + baselines[m], EDROPOUT_TOP1).pvalue for m in sorted(baselines)]
        assert [t.p_value for t in family] == pytest.approx(raw, rel=1e-12)
        assert [t.p_holm for t in family] == pytest.approx(list(multipletests(raw, method="holm")[1]), rel=1e-12)
        assert {t.family_size for t in family} == {len(baselines)}
    # b1 on d1 alone: 3 comparisons in its family, so at most 3x its raw p
    b1 = tests[("d1", "a", "b1")]
    assert b1.p_holm <= 3 * b1.p_value and b1.p_holm >= b1.p_value


def test_controls_are_a_family_of_their_own():
    rows = []
    for seed, top1 in zip(SEEDS, EDROPOUT_TOP1, strict=True):
        rows.append(_cell("d", "a", "edropout", "edropout", seed, top1, control_of=""))
        for control, offset in (("off", [-1.0, -2.0, -1.5, -0.5]), ("noise", [0.5, -0.2, 0.1, 0.3])):
            rows.append(_cell("d", "a", control, control, seed, top1 + offset[seed], control_of="edropout"))
    found = {c.control: c for c in control_comparisons(pd.DataFrame(rows))}
    raw = [found[c].p_value for c in ("noise", "off")]
    assert [found[c].p_holm for c in ("noise", "off")] == pytest.approx(list(multipletests(raw, method="holm")[1]))
    assert found["off"].family_size == 2 and found["off"].mean_difference == pytest.approx(1.25)
    diffs = np.array([1.0, 2.0, 1.5, 0.5])
    assert found["off"].mde == pytest.approx(min_detectable_difference(float(np.std(diffs, ddof=1)), 4))


# --- paired differences --------------------------------------------------------------------------------------


def test_paired_difference_interval_is_scipys():
    a, b = [92.1, 90.4, 91.7, 93.0, 90.9], [91.0, 90.6, 90.2, 91.9, 90.1]
    d = paired_difference(a, b)
    result = stats.ttest_rel(a, b)
    interval = result.confidence_interval(0.95)
    assert (d.ci_low, d.ci_high) == pytest.approx((interval.low, interval.high), rel=1e-12)
    assert (d.p_value, d.statistic) == pytest.approx((result.pvalue, result.statistic), rel=1e-12)
    # by hand: differences 1, 2, 3 -> mean 2, SD 1, half-width t(0.975, 2) / sqrt(3) = 4.302653 / 1.732051
    d = paired_difference([11.0, 12.0, 13.0], [10.0, 10.0, 10.0])
    assert (d.mean, d.sd) == (2.0, 1.0)
    assert (d.ci_low, d.ci_high) == pytest.approx((2 - 2.484138, 2 + 2.484138), abs=1e-6)


def test_paired_difference_says_why_there_is_no_test():
    assert paired_difference([], []).reason == "0 seed pairs (needs >= 2)"
    one = paired_difference([95.0], [97.0])
    assert one.p_value is None and one.mean == -2.0 and one.reason == "1 seed pair (needs >= 2)"
    flat = paired_difference([95.0, 96.0], [96.0, 97.0])
    assert flat.p_value is None and flat.mde is None and "zero variance" in flat.reason
    # equal results that differ only by float rounding are not variance (no p-value out of noise)
    noise = paired_difference([97.5, 98.0, 96.25], [97.5, 98.0 + 1e-13, 96.25])
    assert noise.p_value is None and noise.sd == 0.0 and "zero variance" in noise.reason


# --- minimum detectable difference ---------------------------------------------------------------------------


def test_mde_is_statsmodels_ttestpower_times_the_sd():
    for n, sd in ((3, 0.8), (5, 1.3), (10, 0.25)):
        effect = TTestPower().solve_power(effect_size=None, nobs=n, alpha=0.05, power=0.8, alternative="two-sided")
        assert min_detectable_difference(sd, n) == pytest.approx(effect * sd, rel=1e-9)


def test_mde_has_the_power_it_claims():
    # independent check with the noncentral t: at the MDE the two-sided test at alpha 0.05 has power 0.8
    for n, sd in ((3, 1.0), (6, 0.5), (20, 2.0)):
        mde = min_detectable_difference(sd, n)
        df, nc = n - 1, mde / sd * math.sqrt(n)
        crit = stats.t.ppf(0.975, df)
        power = stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc)
        assert power == pytest.approx(0.8, abs=1e-4)
    # large n: the normal approximation (z_0.975 + z_0.8) x SD / sqrt(n) = 2.801585 x SD / sqrt(n)
    assert min_detectable_difference(1.0, 2000) == pytest.approx(2.801585 / math.sqrt(2000), rel=1e-3)
    assert min_detectable_difference(1.0, 1) is None and min_detectable_difference(0.0, 5) is None


def test_every_paired_test_reports_its_mde():
    tests = paired_tests(_family_table())
    b3 = tests[("d1", "a", "b3")]
    sd = float(np.std(OFFSETS[("d1", "a")]["b3"], ddof=1))
    assert b3.sd_difference == pytest.approx(sd) and b3.mde == pytest.approx(min_detectable_difference(sd, 4))


# --- intervals in range --------------------------------------------------------------------------------------


def test_accuracy_intervals_never_leave_0_100():
    rng = np.random.default_rng(0)
    for _ in range(500):
        n = int(rng.integers(2, 6))
        centre = rng.choice([0.5, 3.0, 50.0, 97.0, 99.5])
        values = np.clip(rng.normal(centre, rng.uniform(0.1, 5.0), size=n), 0.0, 100.0)
        s = summarize(values, bounds=M.TOP1.bounds)
        assert 0.0 <= s.ci_low <= s.mean <= s.ci_high <= 100.0
    # the interval of the issue: 98.89 ± 0.84 at n=3 ran to 100.96; it now stops at 100, the t interval's low end kept
    s = summarize([99.72, 98.06, 98.89], bounds=(0.0, 100.0))
    t_low = stats.t.interval(0.95, 2, loc=np.mean([99.72, 98.06, 98.89]), scale=stats.sem([99.72, 98.06, 98.89]))[0]
    assert s.ci_high == 100.0 and s.ci_low == pytest.approx(t_low) and s.clipped
    assert not summarize([50.0, 51.0, 52.0], bounds=(0.0, 100.0)).clipped


def test_report_summaries_use_each_metrics_range():
    rows = [_cell("d", "a", "dense", "dense", s, 99.0 + 0.5 * s) for s in range(3)]
    rows += [
        _cell("d", "a", "edropout", "edropout", s, 0.2 * s, param_pruning_rate=0.999 + 0.0005 * s) for s in range(3)
    ]
    for group in group_summaries(derive(pd.DataFrame(rows))):
        top1 = group.metrics["top1"]
        assert 0.0 <= top1.ci_low and top1.ci_high <= 100.0
        rate = group.metrics["param_pruning_rate"]
        assert 0.0 <= rate.ci_low and rate.ci_high <= 1.0
