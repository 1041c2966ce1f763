"""The paper's claims (`claims.yaml`, read by `claimfile`) and their verdicts against the study's results.

The paper's setting: a cell is in it when its dataset and arch are among the claim's and every config field of
claims.yaml's `defaults.setting` (the paper's epochs and optimizer) has one of the paper's values; a field the
study did not record counts as not the paper's. Verdicts:

- "reproduced" / "not reproduced": measured on cells in the paper's setting;
- "holds here (different setting)" / "fails here (different setting)": measured on other cells (other datasets,
  models, epochs or optimizer): whether the claim holds in this study, not whether the paper's number is right;
- "saturated: says nothing": an accuracy on which every method's mean is at or above `defaults.saturation`
  (top-5 on 10 classes): it cannot separate methods, whatever it measures;
- "not run", with the reason.

A value claim is decided on the mean (its confidence interval is described in the reason); a comparative claim
(EDropout at least as accurate as a baseline pruned to its rate) on the mean paired difference of every measured
(dataset, arch), with its interval, Holm-adjusted p-value and minimum detectable difference in the reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from benchmark.core import metrics as M
from benchmark.report.claimfile import CLAIM_METRICS, CLAIMS_PATH, Claim, load_claims
from benchmark.report.stats import PairedTest, Summary, paired_tests, paper_point, summarize

__all__ = ["CLAIMS_PATH", "VERDICTS", "Claim", "ClaimResult", "check_claim", "check_claims", "load_claims"]

REPRODUCED, NOT_REPRODUCED, NOT_RUN = "reproduced", "not reproduced", "not run"
HOLDS_HERE, FAILS_HERE = "holds here (different setting)", "fails here (different setting)"
SATURATED = "saturated: says nothing"
VERDICTS = (REPRODUCED, NOT_REPRODUCED, HOLDS_HERE, FAILS_HERE, SATURATED, NOT_RUN)
PAPERS, DIFFERENT = "paper's", "different"
ACCURACY_OF = {M.TOP1: M.TOP1, M.TOP5: M.TOP5, M.TOP1_DROP: M.TOP1, M.TOP5_DROP: M.TOP5}  # what can saturate


@dataclass
class ClaimResult:
    """A claim's verdict, why, and what was measured (`setting`: "paper's" or "different" once measured)."""

    claim: Claim
    verdict: str
    reason: str
    measured: Summary | None = None
    setting: str = ""
    measured_text: str = ""  # what the report shows as measured (default: the summary and its unit)

    def __post_init__(self) -> None:
        if not self.measured_text and self.measured is not None and self.measured.mean is not None:
            self.measured_text = self.measured.format() + CLAIM_METRICS[self.claim.metric]
        self.measured_text = self.measured_text or "-"


def verdict_word(ok: bool, setting: str) -> str:
    if setting == PAPERS:
        return REPRODUCED if ok else NOT_REPRODUCED
    return HOLDS_HERE if ok else FAILS_HERE


def _names(values) -> str:
    return ", ".join(sorted(set(map(str, values)))) or "none"


def _matches(value, allowed: tuple) -> bool | None:
    """Whether a cell's config value is one of the paper's; None when the cell did not record it."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or str(value).strip() == "":
        return None
    for option in allowed:
        try:
            if float(value) == float(option):
                return True
        except (TypeError, ValueError):
            if str(value).strip().lower() == str(option).strip().lower():
                return True
    return False


def setting_gaps(claim: Claim, cells: pd.DataFrame) -> pd.Series:
    """Per cell, why it is not in the claim's paper setting ("" when it is)."""
    fields = [field for field, _ in claim.setting]
    absent = pd.Series(None, index=cells.index, dtype=object)
    columns = [cells[c] if c in cells else absent for c in ["dataset", "arch", *fields]]
    known: dict[tuple, str] = {}  # cells with the same values have the same gaps: each combination once
    gaps = []
    for values in zip(*columns):
        key = tuple((type(v), "nan" if isinstance(v, float) and math.isnan(v) else v) for v in values)
        if key not in known:
            known[key] = _gaps(claim, values, [field in cells for field in fields])
        gaps.append(known[key])
    return pd.Series(gaps, index=cells.index, dtype=object)


def _gaps(claim: Claim, values: tuple, recorded: list[bool]) -> str:
    dataset, arch, *settings = values
    why = []
    if dataset not in claim.datasets:
        why.append(f"dataset {dataset}")
    if arch not in claim.archs:
        why.append(f"arch {arch}")
    for (field, allowed), value, present in zip(claim.setting, settings, recorded, strict=True):
        ok = _matches(value, allowed) if present else None
        paper = "/".join(map(str, allowed))
        if ok is None:
            why.append(f"{field} not recorded (paper: {paper})")
        elif not ok:
            value = int(value) if isinstance(value, float) and value.is_integer() else value
            why.append(f"{field} {value} (paper: {paper})")
    return ", ".join(why)


def _why_not_run(claim: Claim, cells: pd.DataFrame, method: str, point: str) -> str:
    if cells.empty:
        return "this study has no cells"
    datasets = [d for d in claim.datasets if d in set(cells["dataset"])]
    if not datasets:
        noun = "dataset" if len(claim.datasets) == 1 else "datasets"
        return f"{noun} {_names(claim.datasets)} not in this study (ran: {_names(cells['dataset'])})"
    on_data = cells[cells["dataset"].isin(datasets)]
    if not on_data["arch"].isin(claim.archs).any():
        return f"arch {_names(claim.archs)} not run on {_names(datasets)} (ran: {_names(on_data['arch'])})"
    return (
        f"no {method} cells at operating point '{point}' on "
        f"{_names(datasets)}/{_names(on_data.loc[on_data['arch'].isin(claim.archs), 'arch'])}"
    )


def select(claim: Claim, chosen: pd.DataFrame) -> tuple[pd.DataFrame, str, str]:
    """The cells a claim is measured on, its setting and the reason's prefix; no cells when it cannot be run.

    The cells in the paper's setting when there are any; else those on the claim's datasets and archs (another
    training setting); else, for a claim that says `out_of_setting: measure`, every chosen cell."""
    if chosen.empty:
        return chosen, "", ""
    gaps = setting_gaps(claim, chosen)
    if (gaps == "").any():
        return chosen[gaps == ""], PAPERS, ""
    on_data = chosen["dataset"].isin(claim.datasets) & chosen["arch"].isin(claim.archs)
    if on_data.any():
        return chosen[on_data], DIFFERENT, f"different setting: {_names(gaps[on_data])}; "
    if claim.out_of_setting != "measure":
        return chosen.iloc[0:0], "", ""
    prefix = (
        f"different setting: none of the paper's datasets ({_names(claim.datasets)}) with its models "
        f"({_names(claim.archs)}) ran; "
    )
    return chosen, DIFFERENT, prefix


def saturated_pairs(claim: Claim, cells: pd.DataFrame, pairs) -> list[tuple[str, str]]:
    """The (dataset, arch) pairs where every method's mean of the claim's accuracy is at least the saturation."""
    accuracy = ACCURACY_OF.get(claim.metric)
    if accuracy is None or claim.saturation is None:
        return []
    done = cells[cells["status"] == "finished"]
    out = []
    for dataset, arch in sorted(set(pairs)):
        here = done[(done["dataset"] == dataset) & (done["arch"] == arch)]
        means = pd.to_numeric(here[accuracy], errors="coerce").groupby([here["method"], here["operating_point"]])
        means = means.mean().dropna()
        if not means.empty and means.min() >= claim.saturation:
            out.append((dataset, arch))
    return out


def _saturation_note(claim: Claim, cells: pd.DataFrame, measured: pd.DataFrame) -> tuple[bool, str]:
    pairs = set(zip(measured["dataset"], measured["arch"]))
    flat = saturated_pairs(claim, cells, pairs)
    if not flat:
        return False, ""
    accuracy = M.get(ACCURACY_OF[claim.metric]).label
    where = ", ".join(f"{d}/{a}" for d, a in flat)
    if len(flat) == len(pairs):
        return True, (
            f"saturated: every method's mean {accuracy} on {where} is at least {claim.saturation:g}%, so it cannot "
            "separate methods; "
        )
    return False, f"; note: {accuracy} is saturated on {where} (every method >= {claim.saturation:g}%)"


def _pairs(cells: pd.DataFrame) -> str:
    counts = cells.groupby(["dataset", "arch"]).size()
    return ", ".join(f"{d}/{a} ({n})" for (d, a), n in counts.items())


def _compare(claim: Claim, measured: Summary) -> tuple[bool, str]:
    """Whether the mean meets the claim, and what the mean and its CI say."""
    unit, mean = CLAIM_METRICS[claim.metric], measured.mean
    if claim.comparison == "about":
        off = mean - claim.value
        ok = abs(off) <= claim.tolerance
        text = f"off by {off:+.2f}{unit}, {'within' if ok else 'outside'} the ±{claim.tolerance:g} tolerance"
        if measured.has_interval:
            inside = measured.ci_low <= claim.value <= measured.ci_high
            text += f"; the paper's value is {'inside' if inside else 'outside'} the 95% CI"
        return ok, text
    above = claim.comparison == ">"
    ok = mean > claim.value if above else mean < claim.value
    text = f"the mean {'meets' if ok else 'misses'} {claim.comparison} {claim.value:g}{unit}"
    if measured.has_interval:
        low_ok = measured.ci_low > claim.value if above else measured.ci_high < claim.value
        high_ok = measured.ci_high > claim.value if above else measured.ci_low < claim.value
        if low_ok and high_ok:
            text += "; the whole 95% CI meets it"
        elif not low_ok and not high_ok:
            text += "; the whole 95% CI misses it"
        else:
            text += "; the 95% CI straddles the threshold (not conclusive at 95%)"
    return ok, text


def _also(claim: Claim, done: pd.DataFrame) -> str:
    """The metrics shown next to the claim's, e.g. the parameter rate next to the paper's R."""
    parts = []
    for name in claim.show_also:
        metric = M.get(name)
        summary = summarize(done[name] if name in done else [], bounds=metric.bounds)
        parts.append(f"{metric.label}: {summary.format()}{metric.unit}")
    return "; ".join(parts)


def check_value_claim(claim: Claim, cells: pd.DataFrame) -> ClaimResult:
    """A threshold or "about" claim on `stats.derive(cells)`: measured mean (and its CI) vs the claim."""
    chosen = cells[(cells["method"] == claim.method) & (cells["operating_point"] == claim.operating_point)]
    rows, setting, prefix = select(claim, chosen)
    if rows.empty:
        return ClaimResult(claim, NOT_RUN, _why_not_run(claim, cells, claim.method, claim.operating_point))
    finished = rows[rows["status"] == "finished"]
    done = finished[pd.to_numeric(finished[claim.metric], errors="coerce").notna()]
    if finished.empty:
        detail = ", ".join(f"{n} {status}" for status, n in rows["status"].value_counts().items())
        return ClaimResult(claim, NOT_RUN, f"{prefix}no finished cell ({detail})")
    if done.empty:
        why = "; a drop needs the dense cell of the same seed to finish" if claim.metric.endswith("_drop") else ""
        if claim.metric == M.PAPER_R_PERCENT:
            why = "; R needs paper_r_units, measured by cells run since it was added, and the dense cell's"
        return ClaimResult(claim, NOT_RUN, f"{prefix}{len(finished)} finished cells, none with {claim.metric}{why}")
    measured = summarize(done[claim.metric], bounds=M.get(claim.metric).bounds)
    ok, verdict_text = _compare(claim, measured)
    unit = CLAIM_METRICS[claim.metric]
    saturated, note = _saturation_note(claim, cells, done)
    reason = (
        f"{prefix}measured {measured.format()}{unit} over {measured.n} cell{'s' if measured.n != 1 else ''} "
        f"[{_pairs(done)}]; {verdict_text}"
    )
    reason = note + reason if saturated else reason + note
    if measured.n == 1:
        reason += "; one cell: no interval"
    also = _also(claim, done)
    text = measured.format() + unit + (f" ({also})" if also else "")
    verdict = SATURATED if saturated else verdict_word(ok, setting)
    return ClaimResult(claim, verdict, reason, measured, setting, text)


def _difference_text(test: PairedTest, unit: str) -> str:
    text = f"{test.dataset}/{test.arch} {test.mean_difference:+.2f}{unit}"
    if test.ci_low is not None:
        text += f" [{test.ci_low:+.2f}, {test.ci_high:+.2f}]"
    return text


def _test_detail(test: PairedTest, unit: str) -> str:
    text = _difference_text(test, unit) + f" over {test.n_pairs} seed pair{'s' if test.n_pairs != 1 else ''}"
    if test.p_value is None:
        return text + f" (no test: {test.reason})"
    text += f", p {test.p_value:.3g}, Holm p {test.p_holm:.3g} (family of {test.family_size})"
    return text + (f", MDE {test.mde:.2f}{unit}" if test.mde is not None else "")


def check_comparative_claim(claim: Claim, cells: pd.DataFrame, tests: dict[tuple, PairedTest]) -> ClaimResult:
    """EDropout at least as good as `claim.baseline` pruned to its rate: the mean paired difference (baseline minus
    EDropout) is at most 0 on every measured (dataset, arch)."""
    if claim.not_run:
        return ClaimResult(claim, NOT_RUN, claim.not_run)
    if cells.empty:
        return ClaimResult(claim, NOT_RUN, "this study has no cells")
    measured_pairs = {(d, a) for d, a, m in tests if m == claim.baseline}
    if not measured_pairs:
        where = f"at operating point '{claim.baseline_point}' ({claim.method}'s rate)"
        return ClaimResult(claim, NOT_RUN, f"no {claim.baseline} cells {where} in this study")
    chosen = cells[(cells["method"] == claim.method) & (cells["operating_point"] == claim.operating_point)]
    chosen = chosen[[(d, a) in measured_pairs for d, a in zip(chosen["dataset"], chosen["arch"])]]
    rows, setting, prefix = select(claim, chosen)
    if rows.empty:
        return ClaimResult(claim, NOT_RUN, _why_not_run(claim, cells, claim.method, claim.operating_point))
    pairs = sorted(set(zip(rows["dataset"], rows["arch"])))
    measured = [tests[(d, a, claim.baseline)] for d, a in pairs]
    usable = [t for t in measured if t.mean_difference is not None]
    unit = " pp" if CLAIM_METRICS[claim.metric] in ("%", " pp") else CLAIM_METRICS[claim.metric]
    if not usable:
        return ClaimResult(claim, NOT_RUN, prefix + "; ".join(_test_detail(t, unit) for t in measured))
    behind = [t for t in usable if t.mean_difference > 0]
    significant = [t for t in behind if t.p_holm is not None and t.p_holm < 0.05]
    summary = (
        f"the baseline's mean is higher on {len(behind)} of {len(usable)} (dataset, arch) pairs"
        + (f", significantly after Holm on {len(significant)}" if behind else "")
        + "; the claim needs baseline minus EDropout <= 0 on every pair"
    )
    reason = f"{prefix}{M.get(claim.metric).label} of {claim.baseline} at {claim.method}'s rate minus "
    reason += (
        f"{claim.method}'s, paired by seed (95% CI and p before Holm): "
        + "; ".join(_test_detail(t, unit) for t in measured)
        + f"; {summary}"
    )
    saturated, note = _saturation_note(claim, cells, rows)
    text = "; ".join(_difference_text(t, unit) for t in usable) + f" ({claim.baseline} - {claim.method})"
    if saturated:
        return ClaimResult(claim, SATURATED, note + reason, None, setting, text)
    return ClaimResult(claim, verdict_word(not behind, setting), reason + note, None, setting, text)


def check_claim(claim: Claim, cells: pd.DataFrame, tests: dict[tuple, PairedTest] | None = None) -> ClaimResult:
    """The verdict of one claim on `stats.derive(cells)` (`tests`: `paired_tests` of the claim's metric)."""
    if claim.comparative:
        return check_comparative_claim(claim, cells, paired_tests(cells, claim.metric) if tests is None else tests)
    return check_value_claim(claim, cells)


def check_claims(cells: pd.DataFrame, claims: list[Claim] | None = None) -> list[ClaimResult]:
    """Every claim's verdict; `cells` is `stats.derive` of results.csv."""
    claims = load_claims() if claims is None else claims
    cells, _ = paper_point(cells)
    tests = {m: paired_tests(cells, m) for m in {c.metric for c in claims if c.comparative}}
    return [check_claim(c, cells, tests.get(c.metric, {})) for c in claims]
