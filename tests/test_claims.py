"""Claims: every verdict word in the case it is for, the paper's setting, saturation, comparative claims, and the
paper's R measured on hand-built networks."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import timm
import torch
import torch.nn as nn

from benchmark.cell.measure import measure_model, paper_r_percent, paper_r_units
from benchmark.core import metrics as M
from benchmark.core.config import MeasureConfig
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
from benchmark.report.stats import derive
from benchmark.report.table import with_config_fields

CLAIMS = """
defaults:
  setting: {train.epochs: [200], train.optimizer: [adadelta, sgd]}
  saturation: 99.5
abstract:
  datasets: [kmnist]
  archs: [resnet18]
  source: test
  claims:
    - {id: drop, text: "top-1 drop below 1", metric: top1_drop, comparison: "<", value: 1}
    - {id: top5, text: "top-5 drop below 1", metric: top5_drop, comparison: "<", value: 1}
    - {id: r, text: "R below 50", metric: paper_r_percent, comparison: "<", value: 50,
       show_also: [params_pruned_percent]}
    - {id: elsewhere, text: "on cifar10", metric: top1, comparison: ">", value: 50, datasets: [cifar10],
       out_of_setting: not_run}
comparisons:
  source: test
  text: "EDropout at least as accurate as {baseline}"
  datasets: [kmnist]
  archs: [resnet18]
  baselines:
    - {id: vs_worse, method: worse}
    - {id: vs_better, method: better}
    - {id: vs_absent, method: absent}
    - {id: vs_unimplemented, paper_name: X, not_run: "no X implementation in baselines/"}
"""
SEEDS = (0, 1, 2)


def _rows(dataset="kmnist", epochs=200, drop=0.5, top5=100.0, units=4000.0) -> list[dict]:
    """Dense, EDropout (top-1 `drop` below dense, R = units / 100 %) and two baselines at EDropout's rate."""
    rows = []
    cells = (
        ("dense", "dense", 0.0, 10000.0, 0.0),
        ("edropout", "edropout", -drop, units, 0.6),
        ("worse", "matched", -drop - 1.0, 10000.0, 0.6),  # below EDropout on every seed
        ("better", "matched", -drop + 0.8, 10000.0, 0.6),
    )
    for seed in SEEDS:
        for method, point, offset, kept, rate in cells:
            rows.append(
                {
                    "cell": f"{method}/{dataset}/resnet18/seed{seed}/{point}",
                    "dataset": dataset,
                    "arch": "resnet18",
                    "method": method,
                    "operating_point": point,
                    "seed": seed,
                    "status": "finished",
                    "top1": 95.0 + 0.3 * seed + offset + {"better": 0.1, "worse": -0.15}.get(method, 0.0) * seed,
                    "top5": top5,
                    "paper_r_units": kept,
                    "param_pruning_rate": rate + 0.01 * seed if rate else 0.0,
                    "train.epochs": epochs,
                    "train.optimizer": "sgd",
                }
            )
    return rows


@pytest.fixture
def claims(tmp_path):
    path = tmp_path / "claims.yaml"
    path.write_text(CLAIMS)
    return load_claims(path)


def _verdicts(claims, rows) -> dict:
    return {r.claim.id: r for r in check_claims(derive(pd.DataFrame(rows)), claims)}


@pytest.mark.parametrize(
    "dataset,epochs,drop,verdict,setting",
    [
        ("kmnist", 200, 0.5, REPRODUCED, "paper's"),
        ("kmnist", 200, 2.0, NOT_REPRODUCED, "paper's"),
        ("kmnist", 8, 0.5, HOLDS_HERE, "different"),  # the paper's data and model, trained 8 epochs
        ("kmnist", 8, 2.0, FAILS_HERE, "different"),
        ("digits", 200, 0.5, HOLDS_HERE, "different"),  # another dataset: measured, as a different setting
        ("digits", 200, 2.0, FAILS_HERE, "different"),
    ],
)
def test_value_claim_verdicts(claims, dataset, epochs, drop, verdict, setting):
    result = _verdicts(claims, _rows(dataset, epochs, drop))["drop"]
    assert (result.verdict, result.setting) == (verdict, setting)
    assert result.measured.mean == pytest.approx(drop)
    if epochs != 200:
        assert result.reason.startswith("different setting: train.epochs 8 (paper: 200); measured")


@pytest.mark.parametrize(
    "epochs,baseline,verdict",
    [
        (200, "worse", REPRODUCED),
        (200, "better", NOT_REPRODUCED),
        (8, "worse", HOLDS_HERE),
        (8, "better", FAILS_HERE),
    ],
)
def test_comparative_claim_verdicts(claims, epochs, baseline, verdict):
    result = _verdicts(claims, _rows(epochs=epochs))[f"vs_{baseline}"]
    assert result.verdict == verdict
    difference = "-1.15" if baseline == "worse" else "+0.90"
    assert result.measured_text.startswith(f"kmnist/resnet18 {difference} pp [")
    # the reason carries the test, Holm's p over both baselines and the minimum detectable difference
    assert "over 3 seed pairs, p " in result.reason and "(family of 2), MDE " in result.reason


def test_claims_that_cannot_run_say_why(claims):
    results = _verdicts(claims, _rows())
    assert (results["vs_absent"].verdict, results["vs_unimplemented"].verdict) == (NOT_RUN, NOT_RUN)
    assert results["vs_absent"].reason == "no absent cells at operating point 'matched' (edropout's rate) in this study"
    assert results["vs_unimplemented"].reason == "no X implementation in baselines/"
    assert results["elsewhere"].verdict == NOT_RUN
    assert results["elsewhere"].reason == "dataset cifar10 not in this study (ran: kmnist)"
    empty = {r.claim.id: r for r in check_claims(derive(pd.DataFrame(_rows()).iloc[0:0]), claims)}
    assert {r.verdict for r in empty.values()} == {NOT_RUN}
    assert empty["vs_worse"].reason == "this study has no cells"


def test_a_saturated_accuracy_says_nothing(claims):
    # every method at 100% top-5: the top-5 claim would hold, but it cannot separate anything
    result = _verdicts(claims, _rows(top5=100.0))["top5"]
    assert result.verdict == SATURATED
    assert result.reason.startswith("saturated: every method's mean top-5 % on kmnist/resnet18 is at least 99.5%")
    # one method below the level: the metric discriminates again and gets an ordinary verdict
    rows = _rows(top5=100.0)
    for row in rows:
        if row["method"] == "worse":
            row["top5"] = 97.0
    assert _verdicts(claims, rows)["top5"].verdict == REPRODUCED


def test_r_is_checked_next_to_the_parameter_rate(claims):
    ok = _verdicts(claims, _rows(units=4000.0))["r"]  # 40% of the dense units kept
    assert ok.verdict == REPRODUCED and ok.measured.mean == pytest.approx(40.0)
    assert "(params pruned %: 61.00 ± " in ok.measured_text
    assert _verdicts(claims, _rows(units=5100.0))["r"].verdict == NOT_REPRODUCED


def test_the_setting_is_read_from_each_cells_config_when_results_csv_lacks_it(claims, tmp_path):
    rows = _rows()
    for row in rows:
        del row["train.epochs"], row["train.optimizer"]
        row["result_dir"] = f"results/{row['cell']}"
        folder = tmp_path / row["result_dir"]
        folder.mkdir(parents=True)
        (folder / "metrics.json").write_text(json.dumps({"config": {"train": {"epochs": 200, "optimizer": "sgd"}}}))
    cells = with_config_fields(derive(pd.DataFrame(rows)), ["train.epochs", "train.optimizer"], tmp_path)
    assert set(cells["train.epochs"]) == {200} and set(cells["train.optimizer"]) == {"sgd"}
    result = {r.claim.id: r for r in check_claims(cells, claims)}["drop"]
    assert (result.verdict, result.setting) == (REPRODUCED, "paper's")


# --- the paper's R -------------------------------------------------------------------------------------------


class TinyNet(nn.Module):
    """conv 1->4 (3x3), conv 4->2 (5x5), global pool, classifier 2 -> 3 classes."""

    def __init__(self, filters=(4, 2)):
        super().__init__()
        self.conv1 = nn.Conv2d(1, filters[0], 3, padding=1)
        self.conv2 = nn.Conv2d(filters[0], filters[1], 5, padding=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(filters[1], 3)

    def forward(self, x):
        return self.fc(self.pool(self.conv2(torch.relu(self.conv1(x)))).flatten(1))


def test_paper_r_on_a_hand_built_network():
    dense = TinyNet()
    # by hand: 4 filters x 9 + 2 filters x 25 + 2 classifier inputs x 3 classes = 36 + 50 + 6 = 92
    assert paper_r_units(dense) == paper_r_units(dense, count_zero=True) == 92
    masked = TinyNet()
    with torch.no_grad():
        masked.conv1.weight[0] = 0  # one 3x3 filter (its bias does not count: filters are weights)
        masked.conv2.weight[1] = 0  # one 5x5 filter
        masked.fc.weight[:, 1] = 0  # one classifier input
    # kept: 3 x 9 + 1 x 25 + 1 x 3 = 55 of 92; input channels are ignored (conv2's zeroed input 0 does not count)
    assert paper_r_units(masked) == 55
    assert paper_r_percent(masked, dense) == pytest.approx(100 * 55 / 92)
    # the same network physically shrunk gives the same R
    assert paper_r_percent(TinyNet(filters=(3, 1)), dense) == pytest.approx(100 * 55 / 92)


def test_paper_r_counts_hidden_linear_units_and_unstructured_sparsity_keeps_units():
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3))
    dense_units = paper_r_units(mlp)  # 5 hidden units + 5 classifier inputs x 3 classes = 20
    with torch.no_grad():
        mlp[1].weight[:2] = 0  # two hidden units
        mlp[3].weight[:, 0] = 0  # one classifier input
    assert (dense_units, paper_r_units(mlp)) == (20, 3 + 4 * 3)
    # unstructured pruning at 50% almost never zeroes a whole filter: R stays near 100% (the honest answer)
    net = timm.create_model("resnet10t", num_classes=10)
    dense = timm.create_model("resnet10t", num_classes=10)
    torch.manual_seed(0)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                module.weight.mul_((torch.rand_like(module.weight) > 0.5).float())
    assert 99.0 <= paper_r_percent(net, dense) <= 100.0


def test_paper_r_flows_from_the_measured_units_to_the_derived_percent():
    net = TinyNet()
    cfg = MeasureConfig(latency_batch_sizes=[1], latency_warmup=0, latency_repeats=1)
    assert measure_model(net, 1, 8, cfg)[M.PAPER_R_UNITS] == 92
    rows = _rows(units=4600.0)
    cells = derive(pd.DataFrame(rows))
    edropout = cells[cells["method"] == "edropout"]
    assert list(edropout[M.PAPER_R_PERCENT]) == pytest.approx([46.0] * 3)
    assert list(cells.loc[cells["method"] == "dense", M.PAPER_R_PERCENT]) == pytest.approx([100.0] * 3)
    no_dense = derive(pd.DataFrame([r for r in rows if r["method"] != "dense"]))
    assert no_dense[M.PAPER_R_PERCENT].isna().all()  # R needs the dense network's count
