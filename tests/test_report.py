"""The reproduction report: statistics vs scipy and hand values, claims, checklist, Pareto front, report files."""

from __future__ import annotations

import base64
import json
import math
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from benchmark.core.errors import UserError
from benchmark.report import build as report_module
from benchmark.report.build import build_report, checklist, load_results
from benchmark.report.claims import (
    FAILS_HERE,
    HOLDS_HERE,
    NOT_REPRODUCED,
    NOT_RUN,
    REPRODUCED,
    SATURATED,
    check_claims,
    load_claims,
)
from benchmark.report.stats import (
    derive,
    group_summaries,
    paired_test,
    paired_tests,
    pareto_front,
    summarize,
)

SEEDS = (0, 1, 2)
PAIRS = (("digits", "resnet18"), ("digits", "resnet10t"))
DENSE_TOP1 = {"resnet18": [98.0, 98.6, 97.8], "resnet10t": [97.7, 98.3, 97.5]}
# method -> (granularity, {operating point: (top-1 offset from dense per seed, param pruning rate)})
METHODS = {
    "edropout": ("structured", {"edropout": ([-0.9, -0.7, -1.2], 0.55)}),
    "global_magnitude": ("unstructured", {"0.5": ([-0.2, -0.4, -0.1], 0.50), "matched": ([-1.8, -1.1, -2.6], 0.55)}),
    "l1_filter": ("structured", {"0.5": ([-1.0, -1.5, -0.8], 0.50), "matched": ([-2.0, -2.2, -2.9], 0.55)}),
    "random_unstructured": ("unstructured", {"0.5": ([-3.0, -2.5, -3.5], 0.50)}),
}
FAILED_CELL = "l1_filter/digits/resnet18/seed2/matched"
FAILED_ERROR = "ValueError: pruning removed every channel of layer1.0.conv1"
MISSING_CELL = "random_unstructured/digits/resnet10t/seed1/0.5"


def _row(
    method: str, dataset: str, arch: str, seed: int, point: str, granularity: str, top1: float, rate: float
) -> dict:
    folder = {"dense": "", "edropout": ""}.get(point, "matched" if point == "matched" else f"s{point}")
    stage = "dense" if method == "dense" else "cells"
    result_dir = f"results/{stage}/{dataset}/{arch}/seed{seed}" + ("" if method == "dense" else f"/{method}")
    result_dir += f"/{folder}" if folder else ""
    cell = f"{method}/{dataset}/{arch}/seed{seed}" + ("" if point in ("dense", method) else f"/{point}")
    structured = granularity == "structured"
    mac_reduction = 1.0 / (1.0 - rate) if structured else 1.0
    row = {
        "cell": cell,
        "method": method,
        "arch": arch,
        "dataset": dataset,
        "seed": seed,
        "operating_point": point,
        "granularity": granularity,
        "schedule": "after_training",
        "status": "finished",
        "error": "",
        "tags": {"dense": "reference", "random_unstructured": "random", "global_magnitude": "magnitude"}.get(
            method, ""
        ),
        "result_dir": result_dir,
        "top1": round(top1, 4),
        "top5": 100.0 - 0.1 * seed,
        "params": 1e7 * (1 - rate),
        # the paper's kept units: structured pruning removes units (R falls with the rate), unstructured keeps them
        "paper_r_units": 1e4 * (1 - 0.9 * rate) if structured or method == "dense" else 1e4,
        "macs": 1e8 / mac_reduction,
        "latency_ms_b1": 5.0,
        "latency_ms_b64": 40.0,
        "latency_threads": 2,
        "train_seconds": 30.0 + seed,
        "total_train_seconds": 60.0 + seed if method not in ("dense", "edropout") else "",
        "config_hash": f"h{seed}",
        "code_hash": "c0",
    }
    if method != "dense":
        row.update(
            param_pruning_rate=rate,
            mac_reduction=mac_reduction,
            theoretical_mac_reduction=1.0 / (1.0 - rate),
            latency_speedup_b1=(1.2 + 0.05 * seed) if structured else 0.98,
            target_sparsity=rate,
        )
    if method == "edropout":
        row.update(channel_pruning_rate=0.4, top1_full=top1 + 0.3, converged_step=30 if seed < 2 else "")
    return row


def study_rows(pairs=PAIRS) -> list[dict]:
    rows = []
    for dataset, arch in pairs:
        for seed in SEEDS:
            dense = DENSE_TOP1[arch][seed]
            rows.append(_row("dense", dataset, arch, seed, "dense", "none", dense, 0.0))
            for method, (granularity, points) in METHODS.items():
                for point, (offsets, rate) in points.items():
                    rows.append(
                        _row(
                            method, dataset, arch, seed, point, granularity, dense + offsets[seed], rate + 0.002 * seed
                        )
                    )
    for row in rows:
        if row["cell"] in (FAILED_CELL, MISSING_CELL):
            keep = {
                k: row[k]
                for k in (
                    "cell",
                    "method",
                    "arch",
                    "dataset",
                    "seed",
                    "operating_point",
                    "granularity",
                    "schedule",
                    "tags",
                    "result_dir",
                )
            }
            row.clear()
            failed = keep["cell"] == FAILED_CELL
            row.update(keep, status="failed" if failed else "missing", error=FAILED_ERROR if failed else "")
    return rows


def _search_curve(seed: int, n: int = 40) -> dict:
    steps = list(range(n))
    best = [10.0 * math.exp(-s / 10) - 5 + 0.1 * seed for s in steps]
    return {
        "step": steps,
        "best_energy": best,
        "mean_energy": [b + 1.0 for b in best],
        "kept_fraction": [1.0 - 0.4 * min(s, 30) / 30 for s in steps],
        "diversity": [0.5 * math.exp(-s / 15) for s in steps],
    }


def write_study(root: Path, rows: list[dict] | None = None) -> Path:
    """A study folder under `root`: reports/results.csv plus EDropout metrics.json files with search curves."""
    rows = study_rows() if rows is None else rows
    for row in rows:
        if row["method"] == "edropout" and row["status"] == "finished":
            path = root / row["result_dir"] / "metrics.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            converged = row["converged_step"] if row["converged_step"] != "" else None
            path.write_text(
                json.dumps(
                    {"top1": row["top1"], "search_curve": _search_curve(row["seed"]), "converged_step": converged}
                )
            )
    csv = root / "reports" / "results.csv"
    csv.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(csv, index=False)
    return csv


@pytest.fixture
def study(tmp_path) -> Path:
    return write_study(tmp_path)


def _cells(csv: Path) -> pd.DataFrame:
    return derive(load_results(csv))


# --- statistics ----------------------------------------------------------------------------------------------


def test_summary_matches_hand_values_and_the_t_interval():
    s = summarize([1.0, 2.0, 3.0])
    assert (s.n, s.mean, s.std) == (3, 2.0, 1.0)
    # t(0.975, 2) = 4.302653; half-width = 4.302653 * 1 / sqrt(3) = 2.484138 (by hand from the t table)
    assert s.half_width == pytest.approx(2.484138, abs=1e-6)
    assert (s.ci_low, s.ci_high) == pytest.approx((2 - 2.484138, 2 + 2.484138), abs=1e-6)
    values = [97.1, 97.9, 96.6, 97.3]
    s = summarize(values)
    sd = float(np.std(values, ddof=1))
    assert s.std == pytest.approx(sd)
    assert s.half_width == pytest.approx(stats.t.ppf(0.975, 3) * sd / math.sqrt(4))
    assert s.format() == f"{np.mean(values):.2f} ± {sd:.2f} [{s.ci_low:.2f}, {s.ci_high:.2f}]"


def test_one_value_has_no_interval_and_missing_values_are_left_out():
    s = summarize([97.0, float("nan"), None, ""])
    assert s.n == 1 and s.mean == 97.0 and s.ci_low is None and s.std is None
    assert s.format() == "97.00 (n=1: no interval)"
    assert summarize([]).format() == "-" and summarize([float("nan")]).n == 0
    constant = summarize([100.0, 100.0, 100.0])
    assert (constant.std, constant.ci_low, constant.ci_high) == (0.0, 100.0, 100.0)


def test_drops_are_paired_with_the_dense_cell_of_the_same_seed(study):
    cells = _cells(study)
    edropout = cells[(cells["method"] == "edropout") & (cells["arch"] == "resnet18")].set_index("seed")
    for seed in SEEDS:  # offsets are -0.9, -0.7, -1.2 from each seed's own dense top-1
        assert edropout.loc[seed, "top1_drop"] == pytest.approx([0.9, 0.7, 1.2][seed], abs=1e-9)
    # a seed whose dense cell failed has no drop, and the summary counts only the paired seeds
    rows = study_rows()
    for row in rows:
        if row["cell"] == "dense/digits/resnet18/seed1":
            row.update(status="failed", error="boom", top1="")
    cells = _cells(write_study(study.parent.parent / "other", rows))
    (group,) = [g for g in group_summaries(cells) if g.key == ("digits", "resnet18", "edropout", "edropout")]
    assert group.metrics["top1"].n == 3 and group.metrics["top1_drop"].n == 2
    assert group.metrics["top1_drop"].mean == pytest.approx((0.9 + 1.2) / 2)


def test_paired_test_equals_ttest_rel_on_the_same_seed_pairs(study):
    cells = _cells(study)
    tests = paired_tests(cells)
    done = cells[cells["status"] == "finished"]

    def top1(method, point, arch):
        sel = done[(done["method"] == method) & (done["operating_point"] == point) & (done["arch"] == arch)]
        return sel.set_index("seed")["top1"].sort_index()

    base, ref = top1("global_magnitude", "matched", "resnet18"), top1("edropout", "edropout", "resnet18")
    test = tests[("digits", "resnet18", "global_magnitude")]
    assert test.n_pairs == 3 and test.test.startswith("paired t-test")
    assert test.p_value == pytest.approx(stats.ttest_rel(base.to_numpy(), ref.to_numpy()).pvalue, rel=1e-12)
    assert test.mean_difference == pytest.approx(float((base - ref).mean()))
    # l1_filter's matched seed 2 failed: only seeds 0 and 1 pair up
    test = tests[("digits", "resnet18", "l1_filter")]
    base = top1("l1_filter", "matched", "resnet18")
    assert test.n_pairs == 2 and list(base.index) == [0, 1]
    assert test.p_value == pytest.approx(stats.ttest_rel(base.to_numpy(), ref.loc[[0, 1]].to_numpy()).pvalue)
    assert ("digits", "resnet18", "random_unstructured") not in tests  # no matched cells: nothing to test


def test_paired_test_says_na_with_the_reason_instead_of_nan():
    one = paired_test(pd.Series({0: 95.0}), pd.Series({0: 97.0, 1: 96.0}))
    assert one.p_value is None and one.format_p() == "n/a: 1 seed pair (needs >= 2)"
    flat = paired_test(pd.Series({0: 95.0, 1: 96.0}), pd.Series({0: 96.0, 1: 97.0}))
    assert flat.p_value is None and "zero variance" in flat.format_p() and flat.mean_difference == -1.0
    assert paired_test(pd.Series(dtype=float), pd.Series(dtype=float)).format_p() == "n/a: 0 seed pairs (needs >= 2)"


def test_pareto_front_keeps_only_undominated_points():
    points = pd.DataFrame(
        {
            "effective_mac_reduction": [1.0, 2.0, 2.0, 3.0, 1.5, 4.0, np.nan, 3.0],
            "top1_drop": [0.0, 0.5, 0.9, 0.4, 0.2, 3.0, -1.0, 0.6],
        }
    )
    # (2.0, 0.5) and (2.0, 0.9) are beaten by (3.0, 0.4); so is (3.0, 0.6), at the same reduction with a larger
    # drop; the NaN row is never on the front
    assert pareto_front(points).tolist() == [True, False, False, True, True, True, False, False]


# --- claims --------------------------------------------------------------------------------------------------


def test_shipped_claims_keep_the_papers_numbers_and_sources():
    claims = {c.id: c for c in load_claims()}
    assert len(claims) == 3 + 22 + 22 + 4 + 4  # abstract, two tables, IPruning's row, four comparisons
    c = claims["kmnist/resnet18/edropout"]
    assert (c.value, c.method, c.operating_point, c.metric) == (97.78, "edropout", "edropout", "top1")
    assert "Kuzushiji-MNIST" in c.source and "TNNLS 2022" in c.source
    assert claims["fashion_mnist/resnet34/kept_percent"].value == 46.94
    assert claims["kmnist/resnet50/deep_compression"].operating_point == "matched"
    assert claims["cifar10/resnet18/edropout"].source.startswith("IPruning")
    # ">50% of parameters pruned" is checked on the paper's R (% of units kept, as it counted them), below 50
    pruned = claims["abstract_params_pruned"]
    assert (pruned.metric, pruned.comparison, pruned.value) == ("paper_r_percent", "<", 50.0)
    assert pruned.show_also == ("params_pruned_percent",)
    assert claims["kmnist/resnet18/kept_percent"].metric == "paper_r_percent"
    compared = {c.baseline: c for c in claims.values() if c.comparative}
    assert set(compared) == {"global_magnitude", "l1_filter", "thinet", ""}
    assert compared["global_magnitude"].paper_name == "Deep Compression" and compared[""].paper_name == "ChannelNet"
    assert dict(pruned.setting) == {"train.epochs": (200,), "train.optimizer": ("adadelta", "sgd")}


def test_claims_on_a_digits_study(study):
    results = {r.claim.id: r for r in check_claims(_cells(study))}
    kmnist = results["kmnist/resnet18/edropout"]
    assert kmnist.verdict == NOT_RUN and kmnist.reason == "dataset kmnist not in this study (ran: digits)"
    # R = 100 - 90 x rate: 50.5, 50.32, 50.14 % of units kept per seed, not below 50: fails, outside the setting
    pruned = results["abstract_params_pruned"]
    assert pruned.verdict == FAILS_HERE and pruned.setting == "different"
    assert pruned.reason.startswith(
        "different setting: none of the paper's datasets (cifar10, cifar100, "
        "fashion_mnist, flowers102, imagenet, kmnist) with its models"
    )
    assert "over 6 cells [digits/resnet10t (3), digits/resnet18 (3)]" in pruned.reason
    assert pruned.measured.n == 6 and pruned.measured.mean == pytest.approx(50.32)
    assert "(params pruned %: 55.20 ± " in pruned.measured_text  # the parameter rate next to R
    assert results["abstract_top1_drop"].verdict == HOLDS_HERE  # drops about 0.9 pp < 5, on digits
    # every method scores >= 99.8% top-5 on both pairs: the top-5 claim says nothing
    top5 = results["abstract_top5_drop"]
    assert top5.verdict == SATURATED and top5.reason.startswith("saturated: every method's mean top-5 % on ")


def _kmnist(tmp_path, epochs: int, optimizer: str = "sgd") -> dict:
    rows = [r for r in study_rows() if r["arch"] == "resnet18"]
    for row in rows:
        row.update({"dataset": "kmnist", "train.epochs": epochs, "train.optimizer": optimizer})
    return {r.claim.id: r for r in check_claims(_cells(write_study(tmp_path, rows)))}


def test_claim_verdicts_in_the_papers_setting(tmp_path):
    results = _kmnist(tmp_path / "paper", 200)
    # EDropout top-1 mean = 98.133 - 0.933 = 97.2 vs 97.78 ± 1: reproduced, in the paper's setting
    ok = results["kmnist/resnet18/edropout"]
    assert ok.verdict == REPRODUCED and ok.setting == "paper's" and ok.measured.mean == pytest.approx(97.2)
    assert "off by -0.58%, within the ±1 tolerance" in ok.reason
    # dense 98.13 vs the paper's 98.23: reproduced; R = 50.32% of units kept vs 51.49 ± 5: reproduced, with the
    # parameters kept (44.8%) shown next to it
    assert results["kmnist/resnet18/full"].verdict == REPRODUCED
    kept = results["kmnist/resnet18/kept_percent"]
    assert kept.verdict == REPRODUCED and kept.measured.mean == pytest.approx(50.32)
    assert "params kept %: 44.80 ± " in kept.measured_text
    assert results["kmnist/resnet34/edropout"].reason == "arch resnet34 not run on kmnist (ran: resnet18)"
    assert results["abstract_params_pruned"].setting == "paper's"
    assert results["abstract_params_pruned"].verdict == NOT_REPRODUCED  # R 50.32 is not below 50
    # Deep Compression's row: 98.13 - 1.83 = 96.30 vs 95.92 ± 1
    assert results["kmnist/resnet18/deep_compression"].verdict == REPRODUCED


def test_the_same_cells_in_another_setting_hold_or_fail_here(tmp_path):
    results = _kmnist(tmp_path / "short", 8)
    ok, pruned = results["kmnist/resnet18/edropout"], results["abstract_params_pruned"]
    assert (ok.verdict, ok.setting) == (HOLDS_HERE, "different")
    assert ok.reason.startswith("different setting: train.epochs 8 (paper: 200); measured 97.20")
    assert (pruned.verdict, pruned.setting) == (FAILS_HERE, "different")
    adam = _kmnist(tmp_path / "adam", 200, "adam")["kmnist/resnet18/edropout"]
    assert adam.verdict == HOLDS_HERE and "train.optimizer adam (paper: adadelta/sgd)" in adam.reason
    # a study that does not record the setting is not in the paper's setting
    rows = [{**r, "dataset": "kmnist"} for r in study_rows() if r["arch"] == "resnet18"]
    unknown = {r.claim.id: r for r in check_claims(_cells(write_study(tmp_path / "unknown", rows)))}
    assert unknown["kmnist/resnet18/edropout"].verdict == HOLDS_HERE
    assert "train.epochs not recorded (paper: 200)" in unknown["kmnist/resnet18/edropout"].reason


def test_a_drop_claim_without_dense_cells_is_not_run_and_says_why(tmp_path):
    rows = [r for r in study_rows() if r["method"] != "dense"]
    results = {r.claim.id: r for r in check_claims(_cells(write_study(tmp_path, rows)))}
    drop = results["abstract_top1_drop"]
    assert drop.verdict == NOT_RUN and drop.measured is None
    assert drop.reason.endswith(
        "6 finished cells, none with top1_drop; a drop needs the dense cell of the same seed to finish"
    )
    # R divides by the dense cell's kept units: without it, no R either
    assert results["abstract_params_pruned"].verdict == NOT_RUN
    assert "none with paper_r_percent" in results["abstract_params_pruned"].reason


def test_threshold_claims_report_the_ci_against_the_threshold(tmp_path):
    path = tmp_path / "claims.yaml"
    path.write_text("""
abstract:
  datasets: [digits]
  archs: [resnet18, resnet10t]
  source: "test"
  claims:
    - {id: tight, text: "top-1 drop below 0.5", metric: top1_drop, comparison: "<", value: 0.5}
    - {id: loose, text: "top-1 drop below 3", metric: top1_drop, comparison: "<", value: 3}
    - {id: baseline, text: "l1 drop below 1.2", method: l1_filter, operating_point: "0.5",
       metric: top1_drop, comparison: "<", value: 1.2}
""")
    results = {r.claim.id: r for r in check_claims(_cells(write_study(tmp_path)), load_claims(path))}
    assert results["tight"].verdict == NOT_REPRODUCED and "the whole 95% CI misses it" in results["tight"].reason
    assert results["loose"].verdict == REPRODUCED and "the whole 95% CI meets it" in results["loose"].reason
    assert results["baseline"].verdict == REPRODUCED and "straddles" in results["baseline"].reason


ABSTRACT = "abstract: {datasets: [a], archs: [b], source: s, claims: [{id: x, text: t, %s}]}"


@pytest.mark.parametrize(
    "text,message",
    [
        (ABSTRACT % "metric: top2, comparison: '<', value: 1", "unknown metric 'top2'"),
        (ABSTRACT % "metric: top1, comparison: '=', value: 1", "comparison must be one of"),
        (ABSTRACT % "metric: top1, comparison: '<'", "malformed claim entry"),
        ("tables: [{source: s, dataset: d, rows: [{arch: a, ful: 1}]}]", "unknown column 'ful'"),
        ("abstract: [", "not valid YAML"),
    ],
)
def test_bad_claims_files_are_one_line_errors(tmp_path, text, message):
    path = tmp_path / "claims.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match=re.escape(message)) as info:
        load_claims(path)
    assert "\n" not in str(info.value)


# --- checklist -----------------------------------------------------------------------------------------------


def test_checklist_is_computed_from_the_data(study):
    items = {i.item.split(" (")[0].split(" with")[0]: i for i in checklist(_cells(study))}
    assert [i.met for i in checklist(_cells(study))] == [True, True, True, False, True, True]
    assert "global_magnitude on digits/resnet10t: 2" in items["trade-off curves"].detail
    # one arch, one seed, no random baseline: those items flip
    rows = [r for r in study_rows() if r["arch"] == "resnet18" and r["seed"] == 0 and "random" not in r["method"]]
    items = checklist(_cells(write_study(study.parent.parent / "small", rows)))
    assert [i.met for i in items] == [True, False, True, False, False, False]
    assert items[5].detail.startswith("random: none; magnitude: global_magnitude")


# --- the report ----------------------------------------------------------------------------------------------


def test_report_builds_every_output_from_results_csv(study):
    root = study.parent.parent
    out = root / "reports"
    (out / "figures").mkdir()
    (out / "figures" / "search_old_run.png").write_bytes(b"stale")
    summary = build_report(study, out, "Test report", root=root)
    assert (summary.cells, summary.finished, summary.failed, summary.missing) == (42, 40, 1, 1)
    assert set(summary.figures) == {
        "verdict.png",
        "accuracy_vs_pruning.png",
        "drop_vs_macs.png",
        "speedup_vs_macs.png",
        "search_digits_resnet18.png",
        "search_digits_resnet10t.png",
    }
    assert sorted(p.name for p in (out / "figures").iterdir()) == sorted(summary.figures)  # stale one gone
    for name in summary.figures:
        assert (out / "figures" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.glob(".report-*"))

    md = (out / "report.md").read_text()
    assert md.startswith("# Test report\n")
    assert FAILED_CELL in md and FAILED_ERROR in md and MISSING_CELL in md
    assert "### digits / resnet18" in md and "### digits / resnet10t" in md
    assert "![Accuracy vs parameter pruning rate](figures/accuracy_vs_pruning.png)" in md
    assert "dataset kmnist not in this study (ran: digits)" in md
    assert not re.search(r"\bnan\b", md, re.IGNORECASE)
    resnet18 = md.split("### digits / resnet18\n")[1].split("\n### ")[0]
    (line,) = [line for line in resnet18.splitlines() if line.startswith("| global_magnitude | matched |")]
    assert "| 3/3 |" in line and "| 99.90 ± 0.10 [99.65, 100.00] |" in line  # top-5's interval stops at 100
    (line,) = [line for line in resnet18.splitlines() if line.startswith("| edropout | edropout |")]
    assert "| 97.20 ± " in line and "| 50.32 ± " in line  # top-1 and the paper's R
    # the comparisons section: global_magnitude minus EDropout with ttest_rel's CI and p, Holm's p and the MDE
    cells = _cells(study)
    test = paired_tests(cells)[("digits", "resnet18", "global_magnitude")]
    section = md.split("## Baselines against EDropout at its rate")[1].split("\n## ")[0]
    resnet18 = section.split("### digits / resnet18")[1].split("###")[0]
    (line,) = [line for line in resnet18.splitlines() if line.startswith("| global_magnitude |")]
    assert line.startswith(f"| global_magnitude | 3 | {test.mean_difference:+.2f} | [{test.ci_low:+.2f}, ")
    assert f"| {test.mde:.2f} | {test.p_value:.3g} | {test.p_holm:.3g} (of 2) |" in line

    page = (out / "report.html").read_text()
    assert page.count("<img ") == len(summary.figures) == page.count('src="data:image/png;base64,')
    embedded = [base64.b64decode(data) for data in re.findall(r'src="data:image/png;base64,([^"]+)"', page)]
    assert embedded == [(out / "figures" / name).read_bytes() for name in summary.figures]  # whole PNGs, in order
    assert not re.search(r"(src|href)=\"(https?:)?//", page) and "<link" not in page and "<script" not in page
    assert page.count("<table>") == sum(line.startswith("|---|") for line in md.splitlines()) and FAILED_ERROR in page

    metrics = json.loads((out / "metrics.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in json"))
    assert metrics["cells"] == {"finished": 40, "failed": 1, "missing": 1}
    entry = metrics["digits"]["resnet18"]["edropout@edropout"]
    assert entry["top1"] == pytest.approx(97.2) and entry["seeds"] == 3
    assert entry["param_pruning_rate"] == pytest.approx(0.552)

    tradeoff = pd.read_csv(out / "plots" / "tradeoff.csv")
    assert list(tradeoff.columns) == [
        "method",
        "arch",
        "dataset",
        "seed",
        "operating_point",
        "param_pruning_rate",
        "top1",
        "top1_drop",
        "mac_reduction",
        "latency_speedup_b1",
    ]
    assert len(tradeoff) == 40
    gm = tradeoff[(tradeoff["method"] == "global_magnitude") & (tradeoff["operating_point"] == "0.5")]
    assert gm["mac_reduction"].iloc[0] == pytest.approx(2.0)  # non-zero MACs for an unstructured method


def test_report_with_no_cells_still_builds_and_says_so(tmp_path):
    csv = tmp_path / "results.csv"
    csv.write_text("cell,method,arch,dataset,seed,operating_point,status,error,result_dir\n")
    summary = build_report(csv, tmp_path / "out", "Empty", root=tmp_path)
    assert (summary.cells, summary.figures, summary.claims[NOT_RUN]) == (0, [], 55)
    md = (tmp_path / "out" / "report.md").read_text()
    assert "No results: results.csv lists no cells" in md and "this study has no cells" in md
    assert "No figures" in md and "accuracy vs pruning rate: no finished cell" in md
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["cells"]["finished"] == 0
    assert (tmp_path / "out" / "plots" / "tradeoff.csv").read_text().startswith("method,arch,dataset,seed")
    assert "<img" not in (tmp_path / "out" / "report.html").read_text()


def test_a_crash_leaves_the_previous_report_untouched(study, monkeypatch):
    root = study.parent.parent
    build_report(study, root / "reports", "First", root=root)
    before = (root / "reports" / "report.md").read_text()

    def broken(*args):
        raise RuntimeError("renderer crashed")

    monkeypatch.setattr(report_module, "render_html", broken)
    with pytest.raises(RuntimeError):
        build_report(study, root / "reports", "Second", root=root)
    assert (root / "reports" / "report.md").read_text() == before
    assert not list((root / "reports").glob(".report-*"))


HEADER = "cell,method,arch,dataset,seed,operating_point,status\n"


@pytest.mark.parametrize(
    "text,message",
    [
        (None, "not found; run the aggregate stage first"),
        ("cell,method,arch,dataset,seed\nx,dense,r,d,0\n", "lacks columns operating_point, status"),
        (HEADER + "x,dense,r,d,0,dense,done\n", "status 'done'"),
        (HEADER + "x,dense,r,d,a,dense,finished\n", "not an integer"),
        (HEADER + "x,dense,,d,0,dense,finished\n", "row 2: empty arch"),
        (HEADER + "x,dense,r,d,0,dense,finished\nx,dense,r,d,1,dense,finished\n", "cell 'x' appears twice"),
    ],
)
def test_bad_results_tables_are_one_line_errors(tmp_path, text, message):
    csv = tmp_path / "results.csv"
    if text is not None:
        csv.write_text(text)
    with pytest.raises(UserError, match=re.escape(message)) as info:
        load_results(csv)
    assert "\n" not in str(info.value)


def test_report_stage_prints_one_error_line_for_a_missing_table(tmp_path, monkeypatch, capsys):
    import pipelines.report as stage
    from pipelines._main import stage_main

    monkeypatch.setattr(stage, "PROJECT_ROOT", tmp_path)
    monkeypatch.setattr(sys, "argv", ["report"])
    with pytest.raises(SystemExit) as info:
        stage_main(stage.main)
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and len(err.splitlines()) == 1
    assert err.startswith("error: results table") and "results.csv" in err


def test_report_stage_writes_into_reports(tmp_path, monkeypatch, capsys):
    import pipelines.report as stage

    write_study(tmp_path)
    monkeypatch.setattr(stage, "PROJECT_ROOT", tmp_path)
    stage.main([])
    assert "40 finished, 1 failed, 1 missing" in capsys.readouterr().out
    assert (tmp_path / "reports" / "report.html").is_file() and (tmp_path / "reports" / "figures").is_dir()


# --- figures, DVC metrics and plots ----------------------------------------------------------------------------


def _collapsed_study() -> list[dict]:
    """The test study plus synflow at 0.5 on resnet18 only, collapsed to chance (a drop of ~88 pp)."""
    rows = study_rows()
    for seed in SEEDS:
        dense = DENSE_TOP1["resnet18"][seed]
        rows.append(_row("synflow", "digits", "resnet18", seed, "0.5", "unstructured", dense - 88.0, 0.5))
    return rows


def test_figures_keep_legends_off_titles_and_a_collapsed_method_off_the_axes(tmp_path, monkeypatch):
    """Drawn with matplotlib's renderer: the figure legend overlaps no title and no panel; the collapsed method
    is left out of its panel's y-range, drawn at the edge and named in the notes; the other panel is untouched."""
    from benchmark.report import figures

    seen: dict[str, dict] = {}
    save = figures.save_figure

    def measure_then_save(fig, out_dir, name):
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        panels = [ax for ax in fig.axes if ax.get_visible()]
        seen[name] = {
            "legends": [legend.get_window_extent(renderer) for legend in fig.legends],
            "titles": [t.get_window_extent(renderer) for t in [fig._suptitle, *(ax.title for ax in panels)] if t],
            "panels": [ax.get_window_extent(renderer) for ax in panels],
            "ylim": {ax.get_title(): ax.get_ylim() for ax in panels},
        }
        save(fig, out_dir, name)

    monkeypatch.setattr(figures, "save_figure", measure_then_save)
    csv = write_study(tmp_path, _collapsed_study())
    cells = _cells(csv)
    drawn = figures.make_figures(cells, group_summaries(cells), tmp_path / "figures", tmp_path)
    assert {"accuracy_vs_pruning.png", "drop_vs_macs.png", "speedup_vs_macs.png"} <= {f.name for f in drawn.figures}
    for name in ("accuracy_vs_pruning.png", "drop_vs_macs.png", "speedup_vs_macs.png"):
        (legend,) = seen[name]["legends"]
        for box in seen[name]["titles"] + seen[name]["panels"]:
            assert not legend.overlaps(box), (name, legend, box)

    marked = [note for note in drawn.notes if "off the scale" in note]
    assert len(marked) == 2 and all("digits / resnet18: synflow off the scale" in note for note in marked), marked
    low, high = seen["drop_vs_macs.png"]["ylim"]["digits / resnet18"]
    assert 3.0 < high < 20.0 and low < 0.0  # every other drop (0-3 pp) shown; synflow's 88 pp left out
    low, high = seen["accuracy_vs_pruning.png"]["ylim"]["digits / resnet18"]
    assert 80.0 < low < 95.0 < high  # synflow's ~10% top-1 left out
    other = seen["drop_vs_macs.png"]["ylim"]["digits / resnet10t"]
    assert other[1] < 20.0  # and no mark on the panel without a collapsed method


def test_flat_dvc_metrics_and_per_method_plots_render_with_dvc(study, tmp_path):
    """reports/metrics/ holds flat files that `dvc metrics show` reads as one row per (dataset, arch, method)
    and one column per operating point; `dvc plots show` colours the trade-off plots by method."""
    import shutil
    import subprocess

    from tests.conftest import ROOT, dvc

    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    assert dvc(repo, "init", "-q").returncode == 0
    for name in ("dvc.yaml", "params.yaml", ".dvc/plots/by_method.json"):
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / name, repo / name)
    root = study.parent.parent
    build_report(study, repo / "reports", "Test report", root=root)

    cells = _cells(study)
    expected = {
        (g.arch, g.method, g.operating_point): round(g.metrics["top1"].mean, 2)
        for g in group_summaries(cells)
        if g.metrics["top1"].mean is not None
    }
    shown = dvc(repo, "metrics", "show", "--json")
    assert shown.returncode == 0, shown.stderr
    files = json.loads(shown.stdout)[""]["data"]
    assert files["reports/metrics/cells.json"]["data"] == {"finished": 40, "failed": 1, "missing": 1}
    gm = files["reports/metrics/digits/resnet18/global_magnitude.json"]["data"]
    assert gm == {
        "0.5": expected[("resnet18", "global_magnitude", "0.5")],
        "matched": expected[("resnet18", "global_magnitude", "matched")],
    }
    assert files["reports/metrics/digits/resnet18/edropout.json"]["data"] == {
        "matched": expected[("resnet18", "edropout", "edropout")]  # EDropout's own cell: the rate matched to
    }
    assert files["reports/metrics/digits/resnet10t/dense.json"]["data"] == {
        "dense": expected[("resnet10t", "dense", "dense")]
    }
    for entry in files.values():  # flat: a table of numbers, no nesting
        assert all(isinstance(v, (int, float)) for v in entry["data"].values())
    table = dvc(repo, "metrics", "show")
    assert table.returncode == 0 and max(map(len, table.stdout.splitlines())) < 120, table.stdout

    plots = dvc(repo, "plots", "show", "--json")
    assert plots.returncode == 0, plots.stderr
    data = json.loads(plots.stdout)["data"]
    assert set(data) == {"top1_drop_vs_pruning_rate", "top1_drop_vs_mac_reduction"}
    for (plot,) in data.values():
        spec = plot["content"]
        assert spec["spec"]["encoding"]["color"]["field"] == "method"
        assert spec["facet"]["column"]["field"] == "arch"
        methods = {row["method"] for row in spec["data"]["values"]}
        assert methods == set(cells.loc[cells["status"] == "finished", "method"])
        series = {(r["arch"], r["method"], r["operating_point"]) for r in spec["data"]["values"]}
        assert len(series) == len(spec["data"]["values"])  # one point per method and operating point
