"""`python -m benchmark plan`: a profile's cells, datasets and calibrated time; the confirmation before a big study."""

from __future__ import annotations

import io
import math
import re
import sys

import pytest
import torch

from benchmark.core.errors import UserError
from benchmark.study import plan
from benchmark.study.cells import dense_cells, method_cells
from benchmark.study.profiles import get_profile, load_params
from tests.conftest import ROOT

FIXED = plan.Calibration("cpu", train_step_s=0.1, eval_step_s=0.01, latency_s=0.0)


def _profile(**settings):
    base = {
        "datasets": ["digits"],
        "archs": ["test_resnet"],
        "seeds": [0, 1],
        "epochs": 3,
        "methods": ["dense"],
        "executor": {"backend": "serial"},
    }
    return get_profile({"profile": "p", "profiles": {"p": {**base, **settings}}})


@pytest.mark.parametrize("name", sorted(load_params(ROOT / "params.yaml")["profiles"]))
def test_plan_of_every_shipped_profile_lists_the_cells_the_stages_run_and_its_datasets(name, tmp_path):
    params = load_params(ROOT / "params.yaml")
    if name == "paper":  # 5 seeds x 1080 cells take ~15 s to expand here; one seed is the same grid
        params["profiles"]["paper"]["seeds"] = [0]
    profile = get_profile(params, name)
    shapes = []

    def calibration(cfg):  # calibrated once per arch and dataset shape, not once per cell
        shapes.append((cfg.model.arch, cfg.data.name))
        return FIXED

    text = plan.plan_text(profile, calibration)
    expected = len(dense_cells(profile, tmp_path)) + len(method_cells(profile, tmp_path))
    assert re.match(rf"profile '{name}': {expected} cells = ", text)
    table = [line.split() for line in text.splitlines() if re.match(r"  \w+ +\d+  ", line)]
    assert sum(int(row[1]) for row in table) == expected
    assert [row[0] for row in table][0] == "dense" and {row[0] for row in table} == set(profile.methods)
    for dataset in profile.datasets:
        assert re.search(rf"^  {dataset} +(builtin|to pull: [\d.]+ [kMG]B|present|local)", text, re.M)
    if profile.overrides.get("train.device") == "cuda" and not torch.cuda.is_available():
        assert text.endswith(
            "estimate: not available on this machine: bad value for 'train.device': 'cuda', "
            "but torch sees no CUDA device on this machine; use 'auto' or 'cpu'"
        )
        return
    assert re.search(r"^estimate: [\d.]+ (s|min|h) wall on c(pu|uda\S*) with \d+ worker", text, re.M)
    assert len(shapes) == len(set(shapes)) == len(profile.archs) * len(profile.datasets)


def test_the_cpu_and_gpu_profiles_pull_the_mnist_family_and_the_papers_datasets():
    params = load_params(ROOT / "params.yaml")
    cpu, gpu, paper = (get_profile(params, name) for name in ("cpu", "gpu", "paper"))
    assert set(cpu.datasets) == {"mnist", "fashion_mnist", "kmnist"} and cpu.overrides["data.input_size"] == 28
    assert gpu.datasets == paper.datasets and set(gpu.archs) == {"resnet18", "resnet50"}
    assert gpu.overrides["train.device"] in ("cuda", "auto") and gpu.epochs < paper.epochs
    text = plan.plan_text(cpu, lambda cfg: FIXED)
    sizes = [re.search(rf"^  {d} +(?:to pull: |present under '[^']*' \()([\d.]+) MB", text, re.M) for d in cpu.datasets]
    assert all(sizes) and 60 < sum(float(m.group(1)) for m in sizes) < 70  # the three IDX sets, ~64 MB


def test_estimate_is_epochs_times_steps_times_the_calibrated_step_plus_measurement(monkeypatch):
    monkeypatch.setattr(plan, "cpu_cores", lambda: 2)  # the machine's size, for the arithmetic
    profile = _profile()  # 2 dense cells, 3 epochs, one worker
    train, val, test = plan.split_sizes(profile.config("dense", "digits", "test_resnet", 0))
    assert (train, val, test) == (1294, 144, 359)  # 1797 digits: 20% test, then 10% of the rest for validation
    epoch = math.ceil(train / 64) * 0.1 + math.ceil(val / 256) * 0.01
    cell = 3 * epoch + (math.ceil(test / 256) + math.ceil(val / 256)) * 0.01 + plan.CELL_OVERHEAD_S
    got = plan.estimate(profile, plan.profile_cells(profile), lambda cfg: FIXED)
    # the latency stage: each network and its dense reference for the protocol's minimum rounds, one at a time
    latency = max(plan.LATENCY.min_rounds * 2 * plan.LATENCY.block_ms / 1000, 2 * FIXED.latency_s)
    assert latency == pytest.approx(0.2)  # 10 rounds of 10 ms for two networks (FIXED's own latency is 0)
    assert got.workers == 1 and got.seconds == pytest.approx(2 * cell + 2 * latency + plan.STUDY_OVERHEAD_S)
    two = _profile(executor={"backend": "local", "workers": 2})
    parallel = plan.estimate(two, plan.profile_cells(two), lambda cfg: FIXED)
    # two workers fill both cores: half the time, but each cell computes SHARED_CORES_SLOWDOWN slower; the
    # latency stage times one network at a time whatever the workers
    shared = (cell - plan.CELL_OVERHEAD_S) * plan.SHARED_CORES_SLOWDOWN + plan.CELL_OVERHEAD_S
    assert parallel.workers == 2 and parallel.seconds - plan.STUDY_OVERHEAD_S - 2 * latency == pytest.approx(shared)


def test_edropout_pays_its_search_and_post_training_cells_share_one_dense_network():
    def seconds(**settings):  # the cell stages' share of the estimate
        profile = _profile(seeds=[0], **settings)
        cells = plan.profile_cells(profile)
        latency = len(cells) * plan.LATENCY.min_rounds * 2 * plan.LATENCY.block_ms / 1000
        return plan.estimate(profile, cells, lambda cfg: FIXED).seconds - plan.STUDY_OVERHEAD_S - latency

    overhead = plan.CELL_OVERHEAD_S
    dense = seconds()  # one dense cell of 3 epochs
    snip = seconds(methods=["dense", "snip"], operating_points=[0.5]) - dense  # trains the 3 epochs itself
    edropout = seconds(methods=["dense", "edropout"]) - dense
    assert snip == pytest.approx(dense) and edropout - overhead > plan.SEARCH_OVERHEAD * 0.99 * (dense - overhead)
    # 'paper' budget: each point fine-tunes 1 epoch on the dense stage's network (no dense training of its own)
    one = seconds(methods=["dense", "l1_filter"], operating_points=[0.5], finetune_epochs=1) - dense
    two = seconds(methods=["dense", "l1_filter"], operating_points=[0.5, 0.7], finetune_epochs=1) - dense
    assert two == pytest.approx(2 * one) and one < dense
    # 'equal' budget: a 2-epoch dense network, trained once for both points, then 1 epoch each
    equal = {"set": {"train.budget": "equal"}, "finetune_epochs": 1, "methods": ["dense", "l1_filter"]}
    one_eq = seconds(operating_points=[0.5], **equal) - dense
    two_eq = seconds(operating_points=[0.5, 0.7], **equal) - dense
    assert two_eq - one_eq == pytest.approx(one) and one_eq > one


def test_real_calibration_times_this_machine_and_the_plan_command_prints_it(capsys):
    profile = _profile()
    cfg = profile.config("dense", "digits", "test_resnet", 0)
    cfg.train.batch_size = 4
    small = plan.calibrate(cfg, repeats=2, budget_s=0.5)
    cfg.train.batch_size = 256
    big = plan.calibrate(cfg, repeats=2, budget_s=0.5)
    assert small.device == "cpu" and 0 < small.train_step_s < big.train_step_s and small.latency_s > 0
    from benchmark.cli import main

    assert main(["plan", "smoke"]) == 0
    out = capsys.readouterr().out
    assert "profile 'smoke': " in out and re.search(r"^estimate: \d+ (s|min) wall on cpu with 2 worker", out, re.M)
    assert main(["plan", "smok"]) == 2
    assert "unknown profile 'smok'" in capsys.readouterr().err


def test_a_calibration_that_crashes_is_one_line_naming_the_arch():
    profile = _profile(archs=["test_vit"], set={"data.input_size": 8})

    def crash(cfg):
        raise AssertionError("Input height (8) should be divisible by patch size (16).")

    with pytest.raises(UserError, match=r"calibrating test_vit on digits at 8 px failed: AssertionError: Input"):
        plan.estimate(profile, plan.profile_cells(profile), crash)


def _data_stage(monkeypatch, tmp_path, stdin):
    from pipelines import data as stage
    from pipelines._main import stage_main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "stdin", stdin)
    monkeypatch.setattr(sys, "argv", ["pipelines.data", "smoke"])
    stage_main(stage.main)


def test_a_study_above_the_threshold_is_refused_without_a_terminal_and_goes_on_when_told(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv(plan.YES_ENV, raising=False)
    monkeypatch.setenv(plan.THRESHOLD_ENV, "0")  # every study is "big"
    with pytest.raises(SystemExit) as info:
        _data_stage(monkeypatch, tmp_path, io.StringIO(""))
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.match(r"error: profile 'smoke' is estimated at \d+ (s|min) on cpu \(above 0 h", err[0])
    assert "set BENCHMARK_YES=1 to go on" in err[0] and not (tmp_path / "data").exists()  # nothing written

    monkeypatch.setenv(plan.YES_ENV, "1")
    _data_stage(monkeypatch, tmp_path, io.StringIO(""))
    assert (tmp_path / "data/raw/datasets.json").is_file()


def test_on_a_terminal_the_user_answers(monkeypatch, tmp_path, capsys):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.delenv(plan.YES_ENV, raising=False)
    monkeypatch.setenv(plan.THRESHOLD_ENV, "0")
    profile = _profile()
    answers = iter(["y", "n"])
    monkeypatch.setattr("builtins.input", lambda prompt: next(answers))
    monkeypatch.setattr(sys, "stdin", Terminal())
    assert plan.confirm_cost(profile, lambda cfg: FIXED).seconds > 0
    with pytest.raises(UserError, match="not started"):
        plan.confirm_cost(profile, lambda cfg: FIXED)


def test_the_default_study_is_below_the_threshold_and_a_bad_threshold_is_one_line(monkeypatch):
    monkeypatch.delenv(plan.YES_ENV, raising=False)
    monkeypatch.delenv(plan.THRESHOLD_ENV, raising=False)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    default = get_profile(load_params(ROOT / "params.yaml"), "default")
    assert plan.confirm_cost(default, lambda cfg: FIXED).hours < plan.DEFAULT_THRESHOLD_HOURS
    monkeypatch.setenv(plan.THRESHOLD_ENV, "two")
    with pytest.raises(UserError, match=r"bad value for BENCHMARK_CONFIRM_HOURS: 'two'; give a number of hours"):
        plan.confirm_cost(default, lambda cfg: FIXED)
