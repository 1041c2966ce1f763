"""The report's verdict: its words on detected and undetected differences, its budget protocol, its figure's
rows, and what it says when results.csv lacks columns."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from benchmark.report.inference import min_detectable_difference
from benchmark.report.stats import derive
from benchmark.report.verdict import FIGURE, comparison_rows, draw_verdict, headline_cells, reading, verdict_blocks

EDROPOUT = [90.0, 91.0, 92.5]
SEARCH_OFF = [85.0, 86.2, 87.4]  # EDropout minus it: +5.0, +4.8, +5.1 -> detected
SEARCH_NOISE = [89.0, 92.0, 92.0]  # EDropout minus it: +1.0, -1.0, +0.5 -> interval covers 0


def _cell(method, point, seed, top1, dataset="digits", arch="resnet10t", **extra) -> dict:
    row = {
        "cell": f"{method}/{dataset}/{arch}/seed{seed}/{point}",
        "method": method,
        "arch": arch,
        "dataset": dataset,
        "seed": seed,
        "operating_point": point,
        "status": "finished",
        "top1": top1,
        "param_pruning_rate": 0.6,
        "epochs": 8,
        "control_of": "",
        "status_notes": "",
    }
    return row | extra


def _study(baselines: dict[str, tuple[list[float], dict]], pairs=(("digits", "resnet10t"),)) -> pd.DataFrame:
    """EDropout, its two controls, and each baseline at 'matched' (top-1 per seed, extra columns)."""
    rows = []
    for dataset, arch in pairs:
        for seed in range(3):
            where = {"dataset": dataset, "arch": arch}
            rows.append(_cell("edropout", "edropout", seed, EDROPOUT[seed], **where))
            for name, values in (("edropout_search_off", SEARCH_OFF), ("edropout_search_noise", SEARCH_NOISE)):
                rows.append(_cell(name, name, seed, values[seed], control_of="edropout", **where))
            for method, (values, extra) in baselines.items():
                rows.append(_cell(method, "matched", seed, values[seed], **where, **extra))
    return derive(pd.DataFrame(rows))


def _paragraph(blocks) -> str:
    return blocks[1].text


def test_a_detected_difference_is_detected_and_an_interval_over_zero_is_not(tmp_path):
    cells = _study({"l1_filter": ([90.5, 91.3, 92.4], {"total_train_epochs": 12})})
    blocks, figures = verdict_blocks(cells, tmp_path, root=tmp_path)
    text = _paragraph(blocks)
    off = np.subtract(EDROPOUT, SEARCH_OFF)
    noise = np.subtract(EDROPOUT, SEARCH_NOISE)
    p_off, p_noise = stats.ttest_rel(EDROPOUT, SEARCH_OFF).pvalue, stats.ttest_rel(EDROPOUT, SEARCH_NOISE).pvalue
    holm = multipletests([p_noise, p_off], method="holm")[1]
    low, high = stats.ttest_rel(EDROPOUT, SEARCH_OFF).confidence_interval(0.95)
    assert (
        f"edropout_search_off {off.mean():+.2f} pp [{low:+.2f}, {high:+.2f}], detected (Holm p {holm[1]:.2g})" in text
    )
    mde = min_detectable_difference(float(np.std(noise, ddof=1)), 3)
    assert f"edropout_search_noise {noise.mean():+.2f} pp [" in text
    assert f"not detected at n=3 seeds (MDE {mde:.2f} pp)" in text
    assert "EDropout's search beats a random mask (search off) here: detected" in text
    assert "EDropout's search beats the same search on random energies here: not detected at n=3 seeds" in text
    # never a bare "no difference", and the protocol and setting are named
    assert "no difference" not in text.replace("no difference measured", "")
    assert "at the paper's (unequal) budget: post-training baselines got more epochs" in text
    assert "total training epochs: EDropout 8, baselines 12" in text
    assert "0 of the 12 finished cells compared here carry a status note" in text
    assert "8 epochs; the paper's setting not checked" in text  # no claims passed
    assert [f.name for f in figures] == [FIGURE]


def test_the_setting_is_named_different_from_the_papers(tmp_path):
    from benchmark.report.claims import load_claims

    cells = _study({"l1_filter": ([90.5, 91.3, 92.4], {})})
    text = _paragraph(verdict_blocks(cells, tmp_path, root=tmp_path, claims=load_claims())[0])
    assert "a different setting from the paper's: dataset digits, arch resnet10t" in text
    assert "train.epochs not recorded (paper: 200)" in text


@pytest.mark.parametrize(
    "row, words",
    [
        (
            {"mean": 2.0, "ci_low": 1.0, "ci_high": 3.0, "p_holm": 0.01, "mde": 1.0, "n_pairs": 3},
            "detected (Holm p 0.01)",
        ),
        (
            {"mean": 0.4, "ci_low": -0.5, "ci_high": 1.3, "p_holm": 0.6, "mde": 1.234, "n_pairs": 3},
            "not detected at n=3 seeds (MDE 1.23 pp)",
        ),
        (
            {"mean": 0.8, "ci_low": 0.1, "ci_high": 1.5, "p_holm": 0.2, "mde": 0.9, "n_pairs": 5},
            "not detected after Holm (Holm p 0.2; the unadjusted CI excludes 0)",
        ),
        ({"mean": None, "ci_low": None, "ci_high": None, "p_holm": None, "mde": None, "n_pairs": 1}, "no test (x)"),
    ],
)
def test_reading_words_for_each_case(row, words):
    assert reading(row | {"reason": "x"}) == words


def test_equal_budget_cells_make_the_headline_when_both_exist(tmp_path):
    baselines = {
        # the paper's budget: more epochs and far ahead of EDropout; left out of the headline
        "l1_filter": ([93.0, 94.0, 95.5], {"train.budget": "paper", "total_train_epochs": 12}),
        "global_magnitude": ([89.6, 90.4, 92.3], {"train.budget": "equal", "total_train_epochs": 8}),
    }
    cells = _study(baselines, pairs=(("digits", "resnet10t"), ("digits", "resnet18")))
    paper_only = (cells["arch"] == "resnet18") & (cells["method"] == "global_magnitude")
    cells = cells[~paper_only]  # on resnet18 only the paper's budget ran
    budget = cells["train.budget"].fillna("paper")
    chosen, protocols = headline_cells(cells, budget)
    assert protocols == {("digits", "resnet10t"): ("equal", ["l1_filter"]), ("digits", "resnet18"): ("paper", [])}
    rows = comparison_rows(chosen, protocols)
    resnet10t = rows[(rows["arch"] == "resnet10t") & (rows["kind"] == "baseline")]
    assert list(resnet10t["name"]) == ["global_magnitude"] and set(resnet10t["protocol"]) == {"equal"}

    text = _paragraph(verdict_blocks(cells, tmp_path, root=tmp_path)[0])
    first, second = text.split("digits / resnet18")
    assert "at equal budget (train.budget=equal: total training epochs: EDropout 8, baselines 8)" in first
    assert "left out, run only at another budget: l1_filter" in first and "best: global_magnitude" in first
    assert "l1_filter at" not in first
    assert "at the paper's (unequal) budget" in second and "best: l1_filter" in second


def test_the_figure_has_one_row_per_comparison(tmp_path):
    baselines = {
        name: ([v + shift for v in EDROPOUT], {})
        for name, shift in [(f"b{i:02d}", 0.1 * i - 0.8) for i in range(16)]  # 16 baselines + 2 controls
    }
    cells = _study(baselines)
    noisy = cells["method"].eq("b03") & cells["seed"].eq(1)
    cells.loc[noisy, "status_notes"] = "top-1 at chance"
    cells.loc[cells["method"].eq("b05"), "top1"] += np.array([0.3, -0.2, 0.1])  # vary the differences
    budget = pd.Series("paper", index=cells.index)
    chosen, protocols = headline_cells(cells, budget)
    rows = comparison_rows(chosen, protocols)
    assert len(rows) == 18 and rows["kind"].value_counts().to_dict() == {"baseline": 16, "control": 2}
    b05 = rows.set_index("name").loc["b05"]
    assert b05["mean"] == pytest.approx(-0.3 + 0.2 / 3, abs=1e-9)
    assert bool(rows.set_index("name").loc["b03", "noted"]) and not rows.set_index("name").loc["b04", "noted"]

    drawn = draw_verdict(rows, tmp_path / "v.png")
    assert (tmp_path / "v.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (labels,) = drawn.values()
    controls = rows[rows["kind"] == "control"].sort_values("mean", ascending=False)["name"].tolist()
    baselines = rows[rows["kind"] == "baseline"].sort_values("mean", ascending=False)["name"].tolist()
    assert labels == controls + [n + " *" if n == "b03" else n for n in baselines]  # best first, noted starred


def test_missing_columns_give_a_sentence_not_a_crash(tmp_path):
    cells = _study({"l1_filter": ([90.5, 91.3, 92.4], {})})
    old = derive(cells.drop(columns=["control_of", "status_notes", "epochs", "param_pruning_rate"]))
    blocks, _ = verdict_blocks(old, tmp_path, root=tmp_path)
    note = next(b.text for b in blocks if b.text.startswith("Not recorded in results.csv"))
    for column in ("control_of", "status_notes", "param_pruning_rate", "train.budget"):
        assert column in note
    assert "EDropout pruned an unrecorded share of parameters" in _paragraph(blocks)
    assert "none ran" in _paragraph(blocks)  # no control_of: controls are not recognised

    no_top1 = derive(cells.drop(columns=["top1"]))
    blocks, figures = verdict_blocks(no_top1, tmp_path / "none", root=tmp_path)
    assert figures == [] and not (tmp_path / "none" / FIGURE).exists()
    assert any(b.text.startswith("No figure: no comparison") for b in blocks if hasattr(b, "text"))
    assert "top1 (no verdict on it)" in next(b.text for b in blocks if b.text.startswith("Not recorded"))


def test_no_edropout_cell_says_so(tmp_path):
    cells = _study({"l1_filter": ([90.5, 91.3, 92.4], {})})
    blocks, figures = verdict_blocks(cells[cells["method"] != "edropout"], tmp_path, root=tmp_path)
    assert "No finished EDropout cell" in _paragraph(blocks) and figures == []
