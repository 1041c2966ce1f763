"""Statistics over seeds: summaries with t confidence intervals, drops vs dense, paired tests, Pareto fronts.

Input is the table of cells the `aggregate` stage writes (`reports/results.csv`, one row per expected cell);
`derive` adds the columns the summaries use. Only finished cells count; a value that is missing is left out
of a summary (its `n` says how many values it holds), never turned into NaN in the output.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from benchmark.core import metrics as M

CONFIDENCE = 0.95
DENSE, EDROPOUT, MATCHED = "dense", "edropout", "matched"  # methods / operating points with a fixed meaning
GROUP_KEYS = ["dataset", "arch", "method", "operating_point"]
PAIR_KEYS = ["dataset", "arch", "seed"]

# Columns a summary is made of: name -> what it is (labels come from the metric table).
SUMMARY_METRICS = {metric: metric.label for metric in M.SUMMARY}
NUMERIC_COLUMNS = M.numeric_columns()


@dataclass(frozen=True)
class Summary:
    """Mean, sample standard deviation and t confidence interval of one quantity over seeds."""

    n: int
    mean: float | None = None
    std: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    confidence: float = CONFIDENCE

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


def _finite(values: Iterable) -> list[float]:
    out = []
    for value in values:
        try:
            value = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(value):
            out.append(value)
    return out


def summarize(values: Iterable, confidence: float = CONFIDENCE) -> Summary:
    """n, mean, sample std and the t interval of the finite values (no interval for n=1)."""
    values = _finite(values)
    n = len(values)
    if n == 0:
        return Summary(0, confidence=confidence)
    mean = float(np.mean(values))
    if n == 1:
        return Summary(1, mean, confidence=confidence)
    std = float(np.std(values, ddof=1))
    sem = float(stats.sem(values))
    if sem == 0.0:  # every seed gave the same value: the interval is that value
        low = high = mean
    else:
        low, high = (float(v) for v in stats.t.interval(confidence, n - 1, loc=mean, scale=sem))
    return Summary(n, mean, std, low, high, confidence)


def derive(cells: pd.DataFrame) -> pd.DataFrame:
    """The cells with numeric columns coerced and the derived columns the report uses.

    - `top1_drop`, `top5_drop`: dense top-k of the same (dataset, arch, seed) minus this cell's, in
      percentage points (NaN where that dense cell did not finish);
    - `param_pruning_rate` 0 for dense; `params_pruned_percent`, `params_kept_percent` (the paper's R);
    - `effective_mac_reduction`: dense MACs / non-zero MACs for unstructured methods (their shapes do not
      change, so only the theoretical count says what they save), dense MACs / MACs otherwise; 1 for dense;
    - `latency_speedup_b1` 1 for dense; `train_cost_seconds`: total_train_seconds, else train_seconds.
    """
    df = cells.copy()
    for column in NUMERIC_COLUMNS:
        df[column] = pd.to_numeric(df[column], errors="coerce") if column in df else np.nan
    for column in ("granularity", "schedule", "error", "result_dir"):
        if column not in df:
            df[column] = ""
        df[column] = df[column].fillna("").astype(str)
    finished = df["status"] == "finished"
    dense = (df["method"] == DENSE) & finished
    df.loc[dense, M.PARAM_PRUNING_RATE] = df.loc[dense, M.PARAM_PRUNING_RATE].fillna(0.0)
    df.loc[dense, M.LATENCY_SPEEDUP_B1] = df.loc[dense, M.LATENCY_SPEEDUP_B1].fillna(1.0)
    df.loc[dense, M.MAC_REDUCTION] = df.loc[dense, M.MAC_REDUCTION].fillna(1.0)
    unstructured = df["granularity"] == "unstructured"
    df[M.EFFECTIVE_MAC_REDUCTION] = df[M.MAC_REDUCTION].where(~unstructured, df[M.THEORETICAL_MAC_REDUCTION])
    df[M.PARAMS_PRUNED_PERCENT] = 100.0 * df[M.PARAM_PRUNING_RATE]
    df[M.PARAMS_KEPT_PERCENT] = 100.0 - df[M.PARAMS_PRUNED_PERCENT]
    df[M.TRAIN_COST_SECONDS] = df[M.TOTAL_TRAIN_SECONDS].fillna(df[M.TRAIN_SECONDS])

    reference: dict[tuple, tuple[float, float]] = {}
    for _, row in df[dense].iterrows():
        reference.setdefault(tuple(row[k] for k in PAIR_KEYS), (row[M.TOP1], row[M.TOP5]))
    keys = list(zip(*(df[k] for k in PAIR_KEYS)))
    for i, k in enumerate((M.TOP1, M.TOP5)):
        df[f"{k}_dense"] = pd.Series(
            [reference.get(key, (np.nan, np.nan))[i] for key in keys], index=df.index, dtype=float
        ).where(finished)
        df[f"{k}_drop"] = df[f"{k}_dense"] - df[k].where(finished)
    return df


def operating_point_order(point: str) -> tuple:
    """dense, edropout, matched, then fixed rates in increasing order, then anything else."""
    fixed = {DENSE: 0, EDROPOUT: 1, MATCHED: 2}
    if point in fixed:
        return (fixed[point], 0.0, "")
    try:
        return (3, float(point), "")
    except ValueError:
        return (4, 0.0, point)


def method_order(method: str) -> tuple:
    return ({DENSE: 0, EDROPOUT: 1}.get(method, 2), method)


@dataclass
class GroupSummary:
    """One (dataset, arch, method, operating point) over its seeds."""

    dataset: str
    arch: str
    method: str
    operating_point: str
    granularity: str
    cells: int
    finished: int
    failed: int
    missing: int
    metrics: dict[str, Summary] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.dataset, self.arch, self.method, self.operating_point)


def group_summaries(cells: pd.DataFrame, metrics: Iterable[str] = SUMMARY_METRICS) -> list[GroupSummary]:
    """Summaries over seeds of every (dataset, arch, method, operating point) in `derive(cells)`."""
    metrics = list(metrics)
    out = []
    for key, group in cells.groupby(GROUP_KEYS, sort=False):
        done = group[group["status"] == "finished"]
        granularity = next((g for g in group["granularity"] if g), "")
        out.append(
            GroupSummary(
                *key,
                granularity=granularity,
                cells=len(group),
                finished=len(done),
                failed=int((group["status"] == "failed").sum()),
                missing=int((group["status"] == "missing").sum()),
                metrics={m: summarize(done[m]) for m in metrics},
            )
        )
    out.sort(key=lambda g: (g.dataset, g.arch, method_order(g.method), operating_point_order(g.operating_point)))
    return out


@dataclass(frozen=True)
class PairedTest:
    """A baseline at the matched operating point against EDropout, paired by seed."""

    dataset: str
    arch: str
    method: str
    metric: str
    test: str
    n_pairs: int
    mean_difference: float | None = None  # baseline minus EDropout
    statistic: float | None = None
    p_value: float | None = None
    reason: str = ""  # why there is no p-value

    @property
    def done(self) -> bool:
        return self.p_value is not None

    def format_p(self) -> str:
        if self.p_value is None:
            return f"n/a: {self.reason}"
        return f"{self.p_value:.3g}"


TTEST_NAME = "paired t-test (scipy.stats.ttest_rel)"


def paired_test(
    baseline: pd.Series,
    reference: pd.Series,
    *,
    dataset: str = "",
    arch: str = "",
    method: str = "",
    metric: str = M.TOP1,
) -> PairedTest:
    """ttest_rel of two seed-indexed series on their common seeds; n/a (with the reason) when undefined."""
    pairs = pd.concat([baseline.rename("baseline"), reference.rename("reference")], axis=1, join="inner").dropna()
    n = len(pairs)
    base = {"dataset": dataset, "arch": arch, "method": method, "metric": metric, "test": TTEST_NAME, "n_pairs": n}
    if n < 2:
        return PairedTest(**base, reason=f"{n} seed pair{'s' if n != 1 else ''} (needs >= 2)")
    diffs = (pairs["baseline"] - pairs["reference"]).to_numpy(dtype=float)
    mean_diff = float(diffs.mean())
    if np.ptp(diffs) == 0.0:
        return PairedTest(
            **base, mean_difference=mean_diff, reason=f"the {n} differences are all {mean_diff:+.4g} (zero variance)"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = stats.ttest_rel(pairs["baseline"], pairs["reference"])
    if not (math.isfinite(result.pvalue) and math.isfinite(result.statistic)):
        return PairedTest(**base, mean_difference=mean_diff, reason="test statistic undefined (near-zero variance)")
    return PairedTest(
        **base, mean_difference=mean_diff, statistic=float(result.statistic), p_value=float(result.pvalue)
    )


def paired_tests(cells: pd.DataFrame, metric: str = M.TOP1) -> dict[tuple[str, str, str], PairedTest]:
    """Every baseline's `matched` cells against EDropout's own cells, per (dataset, arch, method)."""
    done = cells[cells["status"] == "finished"]
    out = {}
    for (dataset, arch, method), group in cells.groupby(["dataset", "arch", "method"], sort=False):
        if method in (DENSE, EDROPOUT) or not (group["operating_point"] == MATCHED).any():
            continue
        same = done[(done["dataset"] == dataset) & (done["arch"] == arch)]
        base = same[(same["method"] == method) & (same["operating_point"] == MATCHED)]
        ref = same[(same["method"] == EDROPOUT) & (same["operating_point"] == EDROPOUT)]
        test = paired_test(
            base.set_index("seed")[metric],
            ref.set_index("seed")[metric],
            dataset=dataset,
            arch=arch,
            method=method,
            metric=metric,
        )
        if ref.empty:
            test = PairedTest(dataset, arch, method, metric, TTEST_NAME, 0, reason="no finished EDropout cell")
        out[(dataset, arch, method)] = test
    return out


@dataclass(frozen=True)
class ControlComparison:
    """A method against one of its controls on the same cells, paired by seed: method minus control."""

    dataset: str
    arch: str
    method: str
    control: str
    metric: str
    n_pairs: int
    mean_difference: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None
    method_rate: float | None = None  # mean param pruning rate of the method's cells in the pairs
    control_rate: float | None = None
    reason: str = ""


def control_comparisons(cells: pd.DataFrame, metric: str = M.TOP1) -> list[ControlComparison]:
    """Every control (results.csv `control_of`) against its method's own-rate cells, per (dataset, arch):
    the paired differences' mean with a t-interval (CONFIDENCE) and ttest_rel's p-value."""
    if "control_of" not in cells:
        return []
    done = cells[cells["status"] == "finished"]
    out = []
    controls = cells[cells["control_of"].fillna("").astype(str) != ""]
    for (dataset, arch, control), group in controls.groupby(["dataset", "arch", "method"], sort=True):
        method = str(group["control_of"].iloc[0])
        same = done[(done["dataset"] == dataset) & (done["arch"] == arch)]
        own = same[(same["method"] == method) & (same["operating_point"] == method)].set_index("seed")
        ctl = same[same["method"] == control].set_index("seed")
        pairs = own.index.intersection(ctl.index)
        base = {"dataset": dataset, "arch": arch, "method": method, "control": control, "metric": metric}
        if len(pairs) == 0:
            out.append(ControlComparison(**base, n_pairs=0, reason=f"no seed with both {method} and {control}"))
            continue
        diffs = (own.loc[pairs, metric] - ctl.loc[pairs, metric]).to_numpy(dtype=float)
        rates = {
            "method_rate": float(own.loc[pairs, M.PARAM_PRUNING_RATE].mean()),
            "control_rate": float(ctl.loc[pairs, M.PARAM_PRUNING_RATE].mean()),
        }
        summary = summarize(diffs)
        p_value, reason = None, ""
        if len(diffs) < 2:
            reason = "1 seed pair (needs >= 2)"
        elif np.ptp(diffs) == 0.0:
            reason = "zero variance"
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                p_value = float(stats.ttest_1samp(diffs, 0.0).pvalue)
        out.append(
            ControlComparison(
                **base,
                n_pairs=len(diffs),
                mean_difference=float(diffs.mean()),
                ci_low=summary.ci_low,
                ci_high=summary.ci_high,
                p_value=p_value,
                reason=reason,
                **rates,
            )
        )
    return out


def pareto_front(points: pd.DataFrame, x: str = M.EFFECTIVE_MAC_REDUCTION, y: str = M.TOP1_DROP) -> pd.Series:
    """True for the points no other point beats: a larger (or equal) `x` with a smaller (or equal) `y`.

    Rows with a missing `x` or `y` are never on the front.
    """
    front = pd.Series(False, index=points.index)
    valid = points[[x, y]].apply(pd.to_numeric, errors="coerce").dropna()
    for i, (xi, yi) in valid.iterrows():
        beaten = (valid[x] >= xi) & (valid[y] <= yi) & ((valid[x] > xi) | (valid[y] < yi))
        front[i] = not beaten.any()
    return front
