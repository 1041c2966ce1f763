"""Inference over seeds: intervals, paired differences, Holm's correction and the minimum detectable difference.

Every number comes from scipy.stats or statsmodels; this module chooses which, and says why a number is missing
instead of returning NaN.

- An interval is Student's t interval of the mean (scipy.stats.t, n-1 degrees of freedom), intersected with the
  range the metric can take (`bounds`, from the metric table: [0, 100] for accuracies). The true mean lies in that
  range, so intersecting never lowers the interval's coverage. A bootstrap over seeds would also stay in range,
  but its percentile interval lies inside the seeds' own range, which at 3 seeds holds the true mean of a
  symmetric distribution only 75% of the time (1 - 2 x 0.5^3).
- A paired difference is scipy.stats.ttest_rel on the seeds both sides finished: its mean, its t interval and
  p-value (ttest_rel's own `confidence_interval`), and the minimum detectable difference.
- Holm: the step-down adjustment over one family of p-values, equal to statsmodels' multipletests(method="holm").
- Minimum detectable difference (MDE): the true mean difference a two-sided paired t-test at alpha 0.05 would
  detect with power 0.8 at this number of pairs, for the observed SD of the differences
  (statsmodels.stats.power.TTestPower solves for the standardised effect; times the SD).
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats
from statsmodels.stats.power import TTestPower

CONFIDENCE, ALPHA, POWER = 0.95, 0.05, 0.8
SAME = 1e-9  # differences that vary less than this (relative) are float rounding of equal results, not variance
INTERVAL_NAME = "Student t interval of the mean (scipy.stats.t), intersected with the metric's range"
HOLM_NAME = 'Holm step-down (equal to statsmodels multipletests, method="holm")'
MDE_NAME = "statsmodels TTestPower, two-sided, alpha 0.05, power 0.8"


@dataclass(frozen=True)
class Summary:
    """Mean, sample standard deviation and confidence interval of one quantity over seeds."""

    n: int
    mean: float | None = None
    std: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    confidence: float = CONFIDENCE
    clipped: bool = False  # the t interval passed the metric's range and was cut back to it

    @property
    def has_interval(self) -> bool:
        return self.ci_low is not None

    @property
    def half_width(self) -> float | None:
        return None if self.ci_low is None else (self.ci_high - self.ci_low) / 2

    @property
    def note(self) -> str:
        if self.n == 0:
            return "no values"
        if self.n == 1:
            return "n=1: no interval"
        return ""

    def format(self, fmt: str = "{:.2f}", scale: float = 1.0, unit: str = "") -> str:
        """`mean ± std [low, high]`; `mean (n=1: no interval)`; `-` without values."""
        if self.mean is None:
            return "-"
        mean = fmt.format(self.mean * scale) + unit
        if not self.has_interval:
            return f"{mean} ({self.note})"
        low, high = fmt.format(self.ci_low * scale), fmt.format(self.ci_high * scale)
        return f"{mean} ± {fmt.format(self.std * scale)} [{low}, {high}]"

    def as_dict(self) -> dict:
        return {"n": self.n, "mean": self.mean, "std": self.std, "ci_low": self.ci_low, "ci_high": self.ci_high}


def finite(values: Iterable) -> list[float]:
    """The values that are finite numbers, as floats (blanks, text and NaN left out)."""
    out = []
    for value in values:
        try:
            value = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(value):
            out.append(value)
    return out


def _clip(low: float, high: float, bounds: tuple[float, float] | None) -> tuple[float, float, bool]:
    if bounds is None:
        return low, high, False
    new_low, new_high = max(low, bounds[0]), min(high, bounds[1])
    return new_low, new_high, (new_low, new_high) != (low, high)


def summarize(values: Iterable, confidence: float = CONFIDENCE, bounds: tuple[float, float] | None = None) -> Summary:
    """n, mean, sample std and the t interval of the finite values, within `bounds` (no interval for n=1)."""
    values = finite(values)
    n = len(values)
    if n == 0:
        return Summary(0, confidence=confidence)
    mean = float(np.mean(values))
    if n == 1:
        return Summary(1, mean, confidence=confidence)
    std = float(np.std(values, ddof=1))
    sem = float(np.std(np.asarray(values, dtype=float), axis=0, ddof=1) / n**0.5)  # stats.sem's formula, without
    # its array-API and NaN-policy wrappers (most of a summary's time; tests/test_inference_shortcuts.py)
    if sem == 0.0:  # every seed gave the same value: the interval is that value
        low = high = mean
    else:
        q_low, q_high = _t_quantiles(confidence, n - 1)
        low, high = float(q_low * sem + mean), float(q_high * sem + mean)  # as stats.t.interval computes them
    low, high, clipped = _clip(low, high, bounds)
    return Summary(n, mean, std, low, high, confidence, clipped)


@functools.lru_cache(maxsize=256)
def _t_quantiles(confidence: float, df: int) -> tuple[float, float]:
    """The standard t quantiles of a two-sided `confidence` interval at `df` (stats.t.interval's, once per df)."""
    low, high = stats.t.interval(confidence, df)
    return float(low), float(high)


def min_detectable_difference(sd: float | None, n: int, alpha: float = ALPHA, power: float = POWER) -> float | None:
    """The smallest true mean difference a two-sided paired t-test detects with `power` at `n` pairs whose
    differences have standard deviation `sd`; None when undefined (n < 2, or differences that do not vary)."""
    if n < 2 or sd is None or not math.isfinite(sd) or sd <= 0:
        return None
    return _detectable_effect(n, alpha, power) * float(sd)


@functools.lru_cache(maxsize=256)
def _detectable_effect(n: int, alpha: float, power: float) -> float:
    """The standardised effect the test detects at `n` pairs (a root search: solved once per n, not per test)."""
    effect = TTestPower().solve_power(effect_size=None, nobs=n, alpha=alpha, power=power, alternative="two-sided")
    return float(effect)


def difference_bounds(bounds: tuple[float, float] | None) -> tuple[float, float] | None:
    """The range of a difference of two values in `bounds` ([-100, 100] for accuracies)."""
    return None if bounds is None else (bounds[0] - bounds[1], bounds[1] - bounds[0])


@dataclass(frozen=True)
class PairedDifference:
    """`a - b` paired by seed: mean, SD, t interval, ttest_rel, and the minimum detectable difference."""

    n: int
    mean: float | None = None
    sd: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    statistic: float | None = None
    p_value: float | None = None
    mde: float | None = None
    reason: str = ""  # why there is no p-value


def paired_difference(
    a: Sequence[float], b: Sequence[float], bounds: tuple[float, float] | None = None
) -> PairedDifference:
    """ttest_rel(a, b) and its interval (within `bounds`, the range of a difference); n/a with the reason."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    diffs = a - b
    n = len(diffs)
    if n == 0:
        return PairedDifference(0, reason="0 seed pairs (needs >= 2)")
    mean = float(diffs.mean())
    if n == 1:
        return PairedDifference(1, mean, reason="1 seed pair (needs >= 2)")
    sd = float(np.std(diffs, ddof=1))
    if np.ptp(diffs) <= SAME * max(1.0, float(np.abs(diffs).max())):  # equal up to float rounding
        mean, sd = float(np.round(mean, 9)), 0.0
        low, high, _ = _clip(mean, mean, bounds)
        return PairedDifference(
            n, mean, 0.0, low, high, reason=f"the {n} differences are all {mean:+.4g} (zero variance)"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = stats.ttest_rel(a, b)
        interval = result.confidence_interval(CONFIDENCE)
    if not (math.isfinite(result.pvalue) and math.isfinite(result.statistic)):
        return PairedDifference(n, mean, sd, reason="test statistic undefined (near-zero variance)")
    low, high, _ = _clip(float(interval.low), float(interval.high), bounds)
    return PairedDifference(
        n, mean, sd, low, high, float(result.statistic), float(result.pvalue), min_detectable_difference(sd, n)
    )


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm-adjusted p-values of one family; None stays None and is not counted in the family."""
    present = [i for i, p in enumerate(p_values) if p is not None]
    out: list[float | None] = [None] * len(p_values)
    if present:
        # Holm's step-down as statsmodels' multipletests(method="holm") computes it (tests/test_stats.py
        # checks they agree), without it: its Holm branch calls gc.collect() on every call, about 1 s each
        # while a large report's figures and tables are alive (25 of 104 s of a 1,000-cell report).
        p = np.asarray([p_values[i] for i in present], dtype=float)
        order = np.argsort(p)
        steps = np.maximum.accumulate(p[order] * np.arange(len(p), 0, -1))
        adjusted = np.empty_like(p)
        adjusted[order] = np.minimum(steps, 1.0)
        for i, value in zip(present, adjusted, strict=True):
            out[i] = float(value)
    return out
