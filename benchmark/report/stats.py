"""Statistics over the study's cells: summaries over seeds, drops vs dense, paired comparisons, Pareto fronts.

Input is the table of cells the `aggregate` stage writes (`reports/results.csv`, one row per expected cell);
`derive` adds the columns the summaries use. Only finished cells count; a value that is missing is left out
of a summary (its `n` says how many values it holds), never turned into NaN in the output. The statistical
methods themselves (intervals, paired t, Holm, minimum detectable difference) are in `inference`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from benchmark.core import metrics as M
from benchmark.report.inference import CONFIDENCE as CONFIDENCE  # re-exported for the report's modules
from benchmark.report.inference import (
    PairedDifference,
    Summary,
    difference_bounds,
    holm,
    paired_difference,
    summarize,
)

DENSE, EDROPOUT, MATCHED = "dense", "edropout", "matched"  # methods / operating points with a fixed meaning
GROUP_KEYS = ["dataset", "arch", "method", "operating_point"]
PAIR_KEYS = ["dataset", "arch", "seed"]

# Columns a summary is made of: name -> what it is (labels come from the metric table).
SUMMARY_METRICS = {metric: metric.label for metric in M.SUMMARY}
NUMERIC_COLUMNS = M.numeric_columns()


def derive(cells: pd.DataFrame) -> pd.DataFrame:
    """The cells with numeric columns coerced and the derived columns the report uses.

    - `top1_drop`, `top5_drop`: dense top-k of the same (dataset, arch, seed) minus this cell's, in
      percentage points (NaN where that dense cell did not finish);
    - `param_pruning_rate` 0 for dense; `params_pruned_percent`, `params_kept_percent` (parameters);
    - `paper_r_percent`: the paper's R, this cell's paper_r_units over the dense cell's of the same
      (dataset, arch, seed) (every unit of a dense network is kept), in %;
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

    paired = (M.TOP1, M.TOP5, M.PAPER_R_UNITS)
    reference: dict[tuple, tuple[float, ...]] = {}
    for _, row in df[dense].iterrows():
        reference.setdefault(tuple(row[k] for k in PAIR_KEYS), tuple(row[k] for k in paired))
    keys = list(zip(*(df[k] for k in PAIR_KEYS)))
    nothing = (np.nan,) * len(paired)
    for i, k in enumerate(paired):
        df[f"{k}_dense"] = pd.Series([reference.get(key, nothing)[i] for key in keys], index=df.index, dtype=float)
        df[f"{k}_dense"] = df[f"{k}_dense"].where(finished)
    for k in (M.TOP1, M.TOP5):
        df[f"{k}_drop"] = df[f"{k}_dense"] - df[k].where(finished)
    dense_units = df[f"{M.PAPER_R_UNITS}_dense"].where(df[f"{M.PAPER_R_UNITS}_dense"] > 0)
    df[M.PAPER_R_PERCENT] = 100.0 * df[M.PAPER_R_UNITS].where(finished) / dense_units
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
                metrics={m: summarize(done[m], bounds=M.get(m).bounds) for m in metrics},
            )
        )
    out.sort(key=lambda g: (g.dataset, g.arch, method_order(g.method), operating_point_order(g.operating_point)))
    return out


@dataclass(frozen=True)
class PairedTest:
    """A baseline at the matched operating point against EDropout, paired by seed: baseline minus EDropout.

    `p_holm` is Holm's adjustment over the family of every baseline tested against EDropout on the same
    (dataset, arch, metric) (`family_size` p-values); `mde` is the minimum detectable difference at `n_pairs`
    and the observed SD of the differences (`inference.min_detectable_difference`)."""

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
    ci_low: float | None = None
    ci_high: float | None = None
    sd_difference: float | None = None
    mde: float | None = None
    p_holm: float | None = None
    family_size: int = 0

    @property
    def done(self) -> bool:
        return self.p_value is not None

    def format_p(self) -> str:
        if self.p_value is None:
            return f"n/a: {self.reason}"
        return f"{self.p_value:.3g}"


TTEST_NAME = "paired t-test (scipy.stats.ttest_rel)"


def _difference_fields(d: PairedDifference) -> dict:
    return {
        "mean_difference": d.mean,
        "statistic": d.statistic,
        "p_value": d.p_value,
        "reason": d.reason,
        "ci_low": d.ci_low,
        "ci_high": d.ci_high,
        "sd_difference": d.sd,
        "mde": d.mde,
    }


def paired_test(
    baseline: pd.Series,
    reference: pd.Series,
    *,
    dataset: str = "",
    arch: str = "",
    method: str = "",
    metric: str = M.TOP1,
) -> PairedTest:
    """ttest_rel of two seed-indexed series on their common seeds, with the interval of the mean difference and
    the minimum detectable difference; n/a (with the reason) when undefined. Holm's p is set by `paired_tests`."""
    pairs = pd.concat([baseline.rename("baseline"), reference.rename("reference")], axis=1, join="inner").dropna()
    difference = paired_difference(
        pairs["baseline"].to_numpy(dtype=float),
        pairs["reference"].to_numpy(dtype=float),
        bounds=difference_bounds(M.get(metric).bounds),
    )
    base = {"dataset": dataset, "arch": arch, "method": method, "metric": metric, "test": TTEST_NAME}
    return PairedTest(**base, n_pairs=len(pairs), **_difference_fields(difference))


def with_holm(tests: list, family: Iterable[str]) -> list:
    """The tests (PairedTest or ControlComparison) with `p_holm` and `family_size` set, Holm-adjusted within each
    group of equal `family` fields."""
    family = list(family)
    groups: dict[tuple, list[int]] = {}
    for i, test in enumerate(tests):
        groups.setdefault(tuple(getattr(test, f) for f in family), []).append(i)
    out = list(tests)
    for members in groups.values():
        adjusted = holm([tests[i].p_value for i in members])
        size = sum(p is not None for p in adjusted)
        for i, p in zip(members, adjusted, strict=True):
            out[i] = replace(tests[i], p_holm=p, family_size=size)
    return out


def edropout_points(cells: pd.DataFrame) -> pd.Series:
    """Each cell's EDropout operating point ('' for the profile's default point; see `edropout_points`)."""
    if "edropout_point" not in cells:
        return pd.Series("", index=cells.index, dtype=object)
    return cells["edropout_point"].fillna("").astype(str)


PAPER_POINT = "p_init=0.5"  # the paper's default p_init: the EDropout point the paper's claims are checked at


def paper_point(cells: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The cells as one EDropout operating point sees them: with several points (`edropout_points`), the
    EDropout, control and matched cells of the paper's p_init (0.5; else the first point) keep their
    plain operating point ('edropout', 'matched') and the other points' cells are left out. Returns the
    cells and the point's name ('' when the study has one point)."""
    points = edropout_points(cells)
    named = sorted(p for p in points.unique() if p)
    if not named:
        return cells, ""
    chosen = PAPER_POINT if PAPER_POINT in named else named[0]
    keep = cells[(points == "") | (points == chosen)].copy()
    keep["operating_point"] = keep["operating_point"].astype(str).str.replace(f"@{chosen}", "", regex=False)
    keep["edropout_point"] = ""
    return keep, chosen


def _at(name: str, point: str) -> str:
    return f"{name}@{point}" if point else name


def _groups(frame: pd.DataFrame, keys: list[str]) -> dict[tuple, pd.DataFrame]:
    """The rows of `frame` by their values of `keys` (grouped once: no filtering of the whole frame per group)."""
    if frame.empty:
        return {}
    return {key if isinstance(key, tuple) else (key,): group for key, group in frame.groupby(keys, sort=False)}


def paired_tests(cells: pd.DataFrame, metric: str = M.TOP1) -> dict[tuple[str, str, str], PairedTest]:
    """Every baseline's `matched` cells against EDropout's own cells, per (dataset, arch, method), with Holm's
    p-values over the baselines of each (dataset, arch). With several EDropout points a baseline is paired
    with EDropout at each point, under the name `method@point`."""
    cells = cells.assign(_point=edropout_points(cells))
    done = cells[cells["status"] == "finished"]
    out = {}
    matched = cells[cells["operating_point"] == cells["_point"].map(lambda p: _at(MATCHED, p))]
    by_cell = _groups(done, ["dataset", "arch", "_point", "method", "operating_point"])
    for (dataset, arch, method, point), _ in matched.groupby(["dataset", "arch", "method", "_point"], sort=False):
        if method in (DENSE, EDROPOUT):
            continue
        base = by_cell.get((dataset, arch, point, method, _at(MATCHED, point)), done.iloc[:0])
        ref = by_cell.get((dataset, arch, point, EDROPOUT, _at(EDROPOUT, point)), done.iloc[:0])
        name = _at(method, point)
        test = paired_test(
            base.set_index("seed")[metric],
            ref.set_index("seed")[metric],
            dataset=dataset,
            arch=arch,
            method=name,
            metric=metric,
        )
        if ref.empty:
            test = PairedTest(dataset, arch, name, metric, TTEST_NAME, 0, reason="no finished EDropout cell")
        out[(dataset, arch, name)] = test
    return dict(zip(out, with_holm(list(out.values()), ["dataset", "arch", "metric"]), strict=True))


@dataclass(frozen=True)
class ControlComparison:
    """A method against one of its controls on the same cells, paired by seed: method minus control.

    `p_holm`: Holm over the family of every control of the same method on the same (dataset, arch, metric)
    (`family_size` p-values); `mde`: the minimum detectable difference at `n_pairs` and the observed SD."""

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
    sd_difference: float | None = None
    mde: float | None = None
    p_holm: float | None = None
    family_size: int = 0


def control_comparisons(cells: pd.DataFrame, metric: str = M.TOP1) -> list[ControlComparison]:
    """Every control (results.csv `control_of`) against its method's own-rate cells, per (dataset, arch):
    the paired differences' mean with ttest_rel's interval (CONFIDENCE) and p-value, Holm's p over the controls of
    the same method and (dataset, arch), and the minimum detectable difference."""
    if "control_of" not in cells:
        return []
    cells = cells.assign(_point=edropout_points(cells))
    done = cells[cells["status"] == "finished"]
    out = []
    controls = cells[cells["control_of"].fillna("").astype(str) != ""]
    by_cell = _groups(done, ["dataset", "arch", "_point", "method", "operating_point"])
    by_method = _groups(done, ["dataset", "arch", "_point", "method"])
    for (dataset, arch, control, point), group in controls.groupby(["dataset", "arch", "method", "_point"], sort=True):
        method = str(group["control_of"].iloc[0])
        own = by_cell.get((dataset, arch, point, method, _at(method, point)), done.iloc[:0]).set_index("seed")
        ctl = by_method.get((dataset, arch, point, control), done.iloc[:0]).set_index("seed")
        pairs = own.index.intersection(ctl.index)
        base = {"dataset": dataset, "arch": arch, "method": _at(method, point), "control": control, "metric": metric}
        if len(pairs) == 0:
            out.append(ControlComparison(**base, n_pairs=0, reason=f"no seed with both {method} and {control}"))
            continue
        d = paired_difference(
            own.loc[pairs, metric].to_numpy(dtype=float),
            ctl.loc[pairs, metric].to_numpy(dtype=float),
            bounds=difference_bounds(M.get(metric).bounds),
        )
        reason = "zero variance" if d.sd == 0.0 else d.reason
        out.append(
            ControlComparison(
                **base,
                n_pairs=d.n,
                mean_difference=d.mean,
                ci_low=d.ci_low,
                ci_high=d.ci_high,
                p_value=d.p_value,
                method_rate=float(own.loc[pairs, M.PARAM_PRUNING_RATE].mean()),
                control_rate=float(ctl.loc[pairs, M.PARAM_PRUNING_RATE].mean()),
                reason=reason,
                sd_difference=d.sd,
                mde=d.mde,
            )
        )
    return with_holm(out, ["dataset", "arch", "method", "metric"])


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
