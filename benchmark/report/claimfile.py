"""The paper's claims as data: `claims.yaml` read into `Claim`s, every field checked (one-line errors)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmark.core import metrics as M
from benchmark.core.config import load_yaml
from benchmark.core.errors import UserError, unknown_choice
from benchmark.report.stats import DENSE, EDROPOUT, MATCHED

CLAIMS_PATH = Path(__file__).with_name("claims.yaml")
AT_LEAST = ">= baseline"  # a comparative claim: the method's metric at least the baseline's, paired by seed
COMPARISONS = (">", "<", "about")
CLAIM_METRICS = {metric: metric.unit for metric in M.CLAIMABLE}  # metric -> unit shown after a number
# A table row's numbers: column -> (method, operating point, metric, what it is, metrics shown next to it).
TABLE_COLUMNS = {
    "full": (DENSE, DENSE, M.TOP1, "unpruned top-1", ()),
    "deep_compression": ("global_magnitude", MATCHED, M.TOP1, "Deep Compression (same R) top-1", ()),
    "edropout": (EDROPOUT, EDROPOUT, M.TOP1, "{pruned} top-1", ()),
    "kept_percent": (
        EDROPOUT,
        EDROPOUT,
        M.PAPER_R_PERCENT,
        "R (kept units, k^2-weighted, as the paper counts them)",
        (M.PARAMS_KEPT_PERCENT,),
    ),
}


@dataclass(frozen=True)
class Claim:
    """One number, threshold or comparison the paper states, the cells that measure it, and its source.

    `setting`: config fields (beyond the datasets and archs) and the values the paper used; `saturation`: the
    accuracy at or above which every method's mean makes an accuracy metric say nothing; `show_also`: metrics
    reported next to the measured one; a comparative claim (`comparison` AT_LEAST) compares `method` with
    `baseline` at `baseline_point`; `not_run`: why this suite cannot check the claim at all."""

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
    setting: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    saturation: float | None = None
    show_also: tuple[str, ...] = ()
    baseline: str = ""
    baseline_point: str = MATCHED
    paper_name: str = ""
    not_run: str = ""

    @property
    def comparative(self) -> bool:
        return self.comparison == AT_LEAST

    @property
    def expected(self) -> str:
        unit = CLAIM_METRICS[self.metric]
        if self.comparative:
            name = f"{self.paper_name} ({self.baseline})" if self.baseline else self.paper_name
            return f"{self.method} {M.get(self.metric).label} >= {name} at {self.method}'s rate"
        if self.comparison == "about":
            return f"{self.value:g}{unit} ± {self.tolerance:g}"
        return f"{self.comparison} {self.value:g}{unit}"


def _fail(path: Path, where: str, msg: str) -> UserError:
    return UserError(f"{path.name}: {where}: {msg}")


def _number(path: Path, where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(path, where, f"expected a number, got {value!r}")
    return float(value)


def _metric(path: Path, where: str, metric: Any) -> None:
    if metric not in CLAIM_METRICS:
        raise UserError(f"{path.name}: {where}: {unknown_choice('metric', metric, CLAIM_METRICS)}")


def _claim(path: Path, where: str, **fields: Any) -> Claim:
    _metric(path, where, fields["metric"])
    for metric in fields.get("show_also", ()):
        _metric(path, where, metric)
    if fields["comparison"] not in (*COMPARISONS, AT_LEAST):
        raise _fail(path, where, f"comparison must be one of {', '.join(COMPARISONS)}, got {fields['comparison']!r}")
    if fields.get("out_of_setting", "not_run") not in ("not_run", "measure"):
        raise _fail(path, where, f"out_of_setting must be not_run or measure, got {fields['out_of_setting']!r}")
    fields["value"] = _number(path, where, fields["value"])
    if fields["comparison"] == "about":
        if fields.get("tolerance") is None:
            raise _fail(path, where, "a claim compared 'about' a value needs a tolerance")
        fields["tolerance"] = _number(path, where, fields["tolerance"])
    fields["datasets"], fields["archs"] = tuple(fields["datasets"]), tuple(fields["archs"])
    fields["show_also"] = tuple(fields.get("show_also", ()))
    return Claim(**fields)


def _defaults(path: Path, raw: dict) -> dict[str, Any]:
    """What every claim shares: the paper's setting and the saturation level (claims.yaml `defaults`)."""
    defaults = raw.get("defaults") or {}
    setting = defaults.get("setting") or {}
    if not isinstance(setting, dict):
        raise _fail(path, "defaults", "setting must map config fields to the paper's values")
    saturation = defaults.get("saturation")
    return {
        "setting": tuple((str(k), tuple(v if isinstance(v, list) else [v])) for k, v in setting.items()),
        "saturation": None if saturation is None else _number(path, "defaults", saturation),
    }


def _abstract_claims(path: Path, raw: dict, shared: dict[str, Any]) -> list[Claim]:
    defaults, abstract = raw.get("defaults") or {}, raw.get("abstract") or {}
    tolerances = defaults.get("tolerance") or {}
    return [
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
            show_also=item.get("show_also", ()),
            **shared,
        )
        for i, item in enumerate(abstract.get("claims") or [])
    ]


def _table_claims(path: Path, raw: dict, shared: dict[str, Any]) -> list[Claim]:
    tolerances = (raw.get("defaults") or {}).get("tolerance") or {}
    claims = []
    for table in raw.get("tables") or []:
        pruned = table.get("pruned_label", "EDropout (P)")
        for row in table["rows"]:
            where = f"{table['dataset']} row {row.get('arch')!r}"
            unknown = set(row) - set(TABLE_COLUMNS) - {"arch", "paper_arch"}
            if unknown:
                raise UserError(f"{path.name}: {where}: {unknown_choice('column', min(unknown), TABLE_COLUMNS)}")
            label = row.get("paper_arch", row["arch"])
            for column, (method, point, metric, what, also) in TABLE_COLUMNS.items():
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
                        show_also=also,
                        **shared,
                    )
                )
    return claims


def _comparative_claims(path: Path, raw: dict, shared: dict[str, Any]) -> list[Claim]:
    section, abstract = raw.get("comparisons") or {}, raw.get("abstract") or {}
    claims = []
    for i, item in enumerate(section.get("baselines") or []):
        name = item.get("paper_name", item.get("method", ""))
        method = section.get("method", EDROPOUT)
        claims.append(
            _claim(
                path,
                f"comparison {i + 1}",
                id=item["id"],
                text=item.get("text", section["text"].format(method=method, baseline=name)),
                source=item.get("source", section["source"]),
                method=method,
                operating_point=str(section.get("operating_point", EDROPOUT)),
                metric=section.get("metric", M.TOP1),
                comparison=AT_LEAST,
                value=0.0,
                datasets=item.get("datasets", section.get("datasets", abstract["datasets"])),
                archs=item.get("archs", section.get("archs", abstract["archs"])),
                out_of_setting=section.get("out_of_setting", "measure"),
                baseline=item.get("method", ""),
                baseline_point=str(section.get("baseline_point", MATCHED)),
                paper_name=name,
                not_run=item.get("not_run", ""),
                **shared,
            )
        )
    return claims


def load_claims(path: str | Path = CLAIMS_PATH) -> list[Claim]:
    """Every claim of the file: the abstract's thresholds, one claim per number of each table row, and one
    comparative claim per baseline the paper compared with."""
    path = Path(path)
    raw = load_yaml(path, "claims file")
    if not isinstance(raw, dict):
        raise UserError(f"{path.name}: expected a mapping with 'abstract' and 'tables'")
    try:
        shared = _defaults(path, raw)
        claims = _abstract_claims(path, raw, shared) + _table_claims(path, raw, shared)
        claims += _comparative_claims(path, raw, shared)
    except (KeyError, TypeError, AttributeError) as exc:
        raise UserError(f"{path.name}: malformed claim entry ({type(exc).__name__}: {exc})") from None
    ids = [c.id for c in claims]
    duplicate = next((i for i in ids if ids.count(i) > 1), None)
    if duplicate:
        raise UserError(f"{path.name}: claim id {duplicate!r} appears twice")
    return claims
