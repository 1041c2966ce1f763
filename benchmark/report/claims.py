"""The paper's claims as data (`claims.yaml`) and their verdicts against the study's results."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from benchmark.core import metrics as M
from benchmark.core.config import load_yaml
from benchmark.core.errors import UserError, unknown_choice
from benchmark.report.stats import DENSE, EDROPOUT, MATCHED, Summary, summarize

CLAIMS_PATH = Path(__file__).with_name("claims.yaml")
REPRODUCED, NOT_REPRODUCED, NOT_RUN = "reproduced", "not reproduced", "not run"
COMPARISONS = (">", "<", "about")
CLAIM_METRICS = {metric: metric.unit for metric in M.CLAIMABLE}  # metric -> unit shown after a number
# A table row's numbers: column -> (method, operating point, metric, what it is).
TABLE_COLUMNS = {
    "full": (DENSE, DENSE, M.TOP1, "unpruned top-1"),
    "deep_compression": ("global_magnitude", MATCHED, M.TOP1, "Deep Compression (same R) top-1"),
    "edropout": (EDROPOUT, EDROPOUT, M.TOP1, "{pruned} top-1"),
    "kept_percent": (EDROPOUT, EDROPOUT, M.PARAMS_KEPT_PERCENT, "R (% of parameters kept)"),
}


@dataclass(frozen=True)
class Claim:
    """One number or threshold the paper states, the cells that measure it, and its source."""

    id: str
    text: str
    source: str
    method: str
    operating_point: str
    metric: str
    comparison: str
    value: float
    datasets: tuple[str, ...]
    archs: tuple[str, ...]
    tolerance: float | None = None
    out_of_setting: str = "not_run"
    paper_arch: str = ""

    @property
    def expected(self) -> str:
        unit = CLAIM_METRICS[self.metric]
        if self.comparison == "about":
            return f"{self.value:g}{unit} ± {self.tolerance:g}"
        return f"{self.comparison} {self.value:g}{unit}"


@dataclass(frozen=True)
class ClaimResult:
    claim: Claim
    verdict: str
    reason: str
    measured: Summary | None = None
    setting: str = ""  # "paper's" or "different" once measured

    @property
    def measured_text(self) -> str:
        if self.measured is None or self.measured.mean is None:
            return "-"
        return self.measured.format() + CLAIM_METRICS[self.claim.metric]


def _fail(path: Path, where: str, msg: str) -> UserError:
    return UserError(f"{path.name}: {where}: {msg}")


def _number(path: Path, where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(path, where, f"expected a number, got {value!r}")
    return float(value)


def _claim(path: Path, where: str, **fields: Any) -> Claim:
    if fields["metric"] not in CLAIM_METRICS:
        raise UserError(f"{path.name}: {where}: {unknown_choice('metric', fields['metric'], CLAIM_METRICS)}")
    if fields["comparison"] not in COMPARISONS:
        raise _fail(path, where, f"comparison must be one of {', '.join(COMPARISONS)}, got {fields['comparison']!r}")
    if fields.get("out_of_setting", "not_run") not in ("not_run", "measure"):
        raise _fail(path, where, f"out_of_setting must be not_run or measure, got {fields['out_of_setting']!r}")
    fields["value"] = _number(path, where, fields["value"])
    if fields["comparison"] == "about":
        if fields.get("tolerance") is None:
            raise _fail(path, where, "a claim compared 'about' a value needs a tolerance")
        fields["tolerance"] = _number(path, where, fields["tolerance"])
    fields["datasets"], fields["archs"] = tuple(fields["datasets"]), tuple(fields["archs"])
    return Claim(**fields)


def load_claims(path: str | Path = CLAIMS_PATH) -> list[Claim]:
    """Every claim of the file: the abstract's thresholds and one claim per number of each table row."""
    path = Path(path)
    raw = load_yaml(path, "claims file")
    if not isinstance(raw, dict):
        raise UserError(f"{path.name}: expected a mapping with 'abstract' and 'tables'")
    defaults = raw.get("defaults") or {}
    tolerances = defaults.get("tolerance") or {}
    claims: list[Claim] = []
    try:
        abstract = raw.get("abstract") or {}
        for i, item in enumerate(abstract.get("claims") or []):
            claims.append(
                _claim(
                    path,
                    f"abstract claim {i + 1}",
                    id=item["id"],
                    text=item["text"],
                    source=item.get("source", abstract["source"]),
                    method=item.get("method", defaults.get("method", EDROPOUT)),
                    operating_point=str(item.get("operating_point", defaults.get("operating_point", EDROPOUT))),
                    metric=item["metric"],
                    comparison=item["comparison"],
                    value=item["value"],
                    tolerance=item.get("tolerance", tolerances.get(item["metric"])),
                    datasets=item.get("datasets", abstract["datasets"]),
                    archs=item.get("archs", abstract["archs"]),
                    out_of_setting=item.get("out_of_setting", "measure"),
                )
            )
        for table in raw.get("tables") or []:
            pruned = table.get("pruned_label", "EDropout (P)")
            for row in table["rows"]:
                where = f"{table['dataset']} row {row.get('arch')!r}"
                unknown = set(row) - set(TABLE_COLUMNS) - {"arch", "paper_arch"}
                if unknown:
                    bad = unknown_choice("column", min(unknown), TABLE_COLUMNS)
                    raise UserError(f"{path.name}: {where}: {bad}")
                label = row.get("paper_arch", row["arch"])
                for column, (method, point, metric, what) in TABLE_COLUMNS.items():
                    if column not in row:
                        continue
                    claims.append(
                        _claim(
                            path,
                            where,
                            id=f"{table['dataset']}/{row['arch']}/{column}",
                            text=f"{label} on {table['dataset']}: {what.format(pruned=pruned)} {row[column]}",
                            source=table["source"],
                            method=method,
                            operating_point=point,
                            metric=metric,
                            comparison="about",
                            value=row[column],
                            tolerance=tolerances.get(metric),
                            datasets=[table["dataset"]],
                            archs=[row["arch"]],
                            paper_arch=label,
                        )
                    )
    except (KeyError, TypeError) as exc:
        raise UserError(f"{path.name}: malformed claim entry ({type(exc).__name__}: {exc})") from None
    ids = [c.id for c in claims]
    duplicate = next((i for i in ids if ids.count(i) > 1), None)
    if duplicate:
        raise UserError(f"{path.name}: claim id {duplicate!r} appears twice")
    return claims


def _names(values) -> str:
    return ", ".join(sorted(set(values))) or "none"


def _why_not_run(claim: Claim, cells: pd.DataFrame) -> str:
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
        f"no {claim.method} cells at operating point '{claim.operating_point}' on "
        f"{_names(datasets)}/{_names(on_data.loc[on_data['arch'].isin(claim.archs), 'arch'])}"
    )


def _pairs(cells: pd.DataFrame) -> str:
    counts = cells.groupby(["dataset", "arch"]).size()
    return ", ".join(f"{d}/{a} ({n})" for (d, a), n in counts.items())


def check_claim(claim: Claim, cells: pd.DataFrame) -> ClaimResult:
    """The verdict of one claim on `stats.derive(cells)`: measured mean (and its CI) vs the claim."""
    chosen = cells[(cells["method"] == claim.method) & (cells["operating_point"] == claim.operating_point)]
    in_setting = chosen[chosen["dataset"].isin(claim.datasets) & chosen["arch"].isin(claim.archs)]
    setting, prefix = "paper's", ""
    if in_setting.empty:
        if claim.out_of_setting != "measure" or chosen.empty:
            return ClaimResult(claim, NOT_RUN, _why_not_run(claim, cells))
        in_setting, setting = chosen, "different"
        prefix = (
            f"different setting: none of the paper's datasets ({_names(claim.datasets)}) with its models "
            f"({_names(claim.archs)}) ran; "
        )
    finished = in_setting[in_setting["status"] == "finished"]
    done = finished[pd.to_numeric(finished[claim.metric], errors="coerce").notna()]
    if finished.empty:
        counts = in_setting["status"].value_counts()
        detail = ", ".join(f"{n} {status}" for status, n in counts.items())
        return ClaimResult(claim, NOT_RUN, f"{prefix}no finished cell ({detail})")
    if done.empty:
        why = "; a drop needs the dense cell of the same seed to finish" if claim.metric.endswith("_drop") else ""
        return ClaimResult(claim, NOT_RUN, f"{prefix}{len(finished)} finished cells, none with {claim.metric}{why}")
    measured = summarize(done[claim.metric])
    unit = CLAIM_METRICS[claim.metric]
    mean = measured.mean
    if claim.comparison == "about":
        off = mean - claim.value
        ok = abs(off) <= claim.tolerance
        verdict_text = f"off by {off:+.2f}{unit}, {'within' if ok else 'outside'} the ±{claim.tolerance:g} tolerance"
        if measured.has_interval:
            inside = measured.ci_low <= claim.value <= measured.ci_high
            verdict_text += f"; the paper's value is {'inside' if inside else 'outside'} the 95% CI"
    else:
        ok = mean > claim.value if claim.comparison == ">" else mean < claim.value
        verdict_text = f"the mean {'meets' if ok else 'misses'} {claim.comparison} {claim.value:g}{unit}"
        if measured.has_interval:
            low_ok = measured.ci_low > claim.value if claim.comparison == ">" else measured.ci_high < claim.value
            high_ok = measured.ci_high > claim.value if claim.comparison == ">" else measured.ci_low < claim.value
            if low_ok and high_ok:
                verdict_text += "; the whole 95% CI meets it"
            elif not low_ok and not high_ok:
                verdict_text += "; the whole 95% CI misses it"
            else:
                verdict_text += "; the 95% CI straddles the threshold (not conclusive at 95%)"
    reason = (
        f"{prefix}measured {measured.format()}{unit} over {measured.n} cell{'s' if measured.n != 1 else ''} "
        f"[{_pairs(done)}]; {verdict_text}"
    )
    if measured.n == 1:
        reason += "; one cell: no interval"
    return ClaimResult(claim, REPRODUCED if ok else NOT_REPRODUCED, reason, measured, setting)


def check_claims(cells: pd.DataFrame, claims: list[Claim] | None = None) -> list[ClaimResult]:
    """Every claim's verdict; `cells` is `stats.derive` of results.csv."""
    return [check_claim(c, cells) for c in (load_claims() if claims is None else claims)]
