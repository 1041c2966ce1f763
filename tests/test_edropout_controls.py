"""EDropout's controls differ from EDropout only where they should: same seed, initial state, schedule and budget."""

import copy

import pandas as pd
import pytest
import timm
import torch

from benchmark.cell.fingerprint import fingerprint_files
from benchmark.cell.plugins import discover, get_method
from benchmark.cell.runner import TrackingSettings, run_cell
from benchmark.report.controls import controls_blocks
from benchmark.report.stats import control_comparisons
from edropout import EDropout, EDropoutConfig

CONTROLS = {
    "edropout_search_off": "off",
    "edropout_search_noise": "noise",
    "edropout_shuffled": "off",
    "edropout_scratch": "off",
}


def _controller(search: str, seed: int = 3) -> tuple[EDropout, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = timm.create_model("test_resnet", num_classes=10, in_chans=1)
    x, y = torch.randn(8, 1, 16, 16), torch.randint(0, 10, (8,))
    config = EDropoutConfig(population=4, search=search, stop_fraction=0.5, patience=None)
    return EDropout(model, x[:1], epochs=2, config=config, seed=seed, steps_per_epoch=3), x, y


def test_search_off_keeps_the_first_random_state_and_the_schedule():
    energy, x, y = _controller("energy")
    off, _, _ = _controller("off")
    assert torch.equal(energy.population, off.population)  # same seed: the same initial population
    first = off.population[0].clone()
    off.energies = None  # never scored
    for ctrl in (energy, off):
        for _ in range(3):
            ctrl.before_step(x, y)
            ctrl.after_step()
        ctrl.end_epoch()
    assert torch.equal(off.best, first) and off.history == [] and off.search_seconds == 0.0
    assert len(energy.history) == 3
    assert off.frozen and energy.frozen and off.converged_epoch == energy.converged_epoch == 2  # same schedule
    assert off.shrunk and energy.shrunk


def test_search_noise_draws_the_same_evolution_with_random_energies():
    energy, x, y = _controller("energy")
    noise, _, _ = _controller("noise")

    def refuse(*_):
        raise AssertionError("the noise control must not score states")

    noise.energies = refuse
    energy.before_step(x, y)
    noise.before_step(x, y)
    # donors, mutation and crossover drew the same numbers from the search's generator
    assert torch.equal(energy.generator.get_state(), noise.generator.get_state())
    assert len(noise.history) == 1 and noise.history[0].best_energy < 1.0  # a uniform random "energy"


@pytest.mark.parametrize("control", sorted(CONTROLS))
def test_controls_are_registered_with_edropout_settings_and_its_code(control):
    discover()
    spec = get_method(control)
    edropout = get_method("edropout")
    assert spec.control_of == "edropout" and "control" in spec.tags and not spec.takes_sparsity
    assert spec.check_args({"population": 6}).search == CONTROLS[control]
    with pytest.raises(Exception, match=f"'search' is fixed to '{CONTROLS[control]}'"):
        spec.validate_args({"search": "energy"})
    from benchmark.cell.data import get_spec

    files = {str(p) for p in fingerprint_files(spec, get_spec("digits"))}
    assert edropout.source in files and spec.source in files  # editing EDropout's glue re-runs its controls


def test_control_cells_run_with_edropouts_budget(tmp_path, tiny_cfg):
    results = {}
    for method in ("edropout", "edropout_search_off"):
        cfg = tiny_cfg
        cfg.method, cfg.model.arch, cfg.train.epochs = method, "test_resnet", 2
        results[method] = run_cell(cfg, tmp_path / method, TrackingSettings(enabled=False), progress=False)
    ours, off = results["edropout"], results["edropout_search_off"]
    assert off["search"] == "off" and off["generations"] == 0 and ours["generations"] > 0
    for key in ("epochs", "converged_epoch", "units", "unit_groups"):
        assert off[key] == ours[key], key
    assert len(off["kept_per_group"]) == off["unit_groups"] and 0 < off["param_pruning_rate"] < 1


def test_shuffled_state_has_the_counts_at_other_positions():
    energy, _, _ = _controller("energy")
    counts = [int(part.sum()) for part in energy.units.split(energy.population[1])]
    torch.manual_seed(0)
    model = timm.create_model("test_resnet", num_classes=10, in_chans=1)
    config = EDropoutConfig(population=4, search="off", patience=None, kept_per_group=counts)
    shuffled = EDropout(model, torch.randn(1, 1, 16, 16), epochs=2, config=config, seed=3)
    assert [int(p.sum()) for p in shuffled.units.split(shuffled.best)] == counts
    assert not torch.equal(shuffled.best, energy.population[1])  # same counts, other positions
    with pytest.raises(ValueError, match="unit groups"):
        EDropout(model, torch.randn(1, 1, 16, 16), 2, EDropoutConfig(kept_per_group=counts[:-1]))


def test_shuffled_and_scratch_cells_take_edropouts_widths(tmp_path, tiny_cfg, monkeypatch):
    """Both read the finished EDropout cell with the same settings; the network they end with has
    exactly EDropout's per-group widths and parameter count; scratch trains its epochs from scratch."""
    from benchmark.core.config import config_hash
    from benchmark.core.paths import cell_folder

    monkeypatch.setenv("BENCHMARK_RESULTS", str(tmp_path))
    cfg = tiny_cfg
    cfg.model.arch, cfg.train.epochs = "test_resnet", 2
    cfg.method = "edropout_shuffled"
    with pytest.raises(Exception, match="needs the finished EDropout result"):
        run_cell(cfg, tmp_path / "early", TrackingSettings(enabled=False), progress=False)
    twin = copy.deepcopy(cfg)
    twin.method = "edropout"
    folder = cell_folder(tmp_path, "cells", "digits", "test_resnet", 0, "edropout", "own", config_hash(twin))
    ours = run_cell(twin, folder, TrackingSettings(enabled=False), progress=False)
    for method in ("edropout_shuffled", "edropout_scratch"):
        cfg.method = method
        got = run_cell(cfg, tmp_path / method, TrackingSettings(enabled=False), progress=False)
        assert got["kept_per_group"] == ours["kept_per_group"] and got["params"] == ours["params"]
        assert got["config"]["method_args"]["twin_from"].endswith(f"({ours['config_hash']})")
        assert got["epochs"] == ours["epochs"] == 2
    assert got["search"] == "scratch"


def test_the_report_pairs_edropout_with_each_control_by_seed():
    rows = []
    for seed, (ours, off) in enumerate([(90.0, 88.0), (91.0, 88.5), (89.0, 88.0)]):
        for method, top1, control_of in (("edropout", ours, ""), ("edropout_search_off", off, "edropout")):
            rows.append(
                {
                    "dataset": "digits",
                    "arch": "a",
                    "seed": seed,
                    "method": method,
                    "operating_point": method,
                    "status": "finished",
                    "top1": top1,
                    "param_pruning_rate": 0.5,
                    "control_of": control_of,
                }
            )
    rows.append({**rows[-1], "seed": 9, "top1": 10.0})  # no EDropout twin for seed 9: not paired
    (c,) = control_comparisons(pd.DataFrame(rows))
    assert (c.method, c.control, c.n_pairs) == ("edropout", "edropout_search_off", 3)
    assert c.mean_difference == pytest.approx(1.8333, abs=1e-3)
    assert c.ci_low < c.mean_difference < c.ci_high and c.p_value is not None
    table = controls_blocks(pd.DataFrame(rows))[-1]
    assert table.rows[0][2] == "edropout - edropout_search_off" and table.rows[0][4] == "+1.83"
    assert "nothing here separates" in controls_blocks(pd.DataFrame(rows[:1]))[0].text


def test_with_several_edropout_points_each_pairs_with_its_own_edropout_cells():
    from benchmark.report.stats import paired_tests

    rows = []
    for point, shift in (("p_init=0.3", 0.0), ("p_init=0.7", 5.0)):
        for seed in range(3):
            for method, op, top1, control_of in (
                ("edropout", f"edropout@{point}", 90.0 + shift + seed, ""),
                ("edropout_search_off", f"edropout_search_off@{point}", 89.0 + shift + seed * 0.5, "edropout"),
                ("l1_filter", f"matched@{point}", 91.0 + shift + seed * 1.5, ""),
            ):
                rows.append(
                    {
                        "dataset": "digits",
                        "arch": "a",
                        "seed": seed,
                        "method": method,
                        "operating_point": op,
                        "edropout_point": point,
                        "status": "finished",
                        "top1": top1,
                        "param_pruning_rate": 0.5,
                        "control_of": control_of,
                    }
                )
    cells = pd.DataFrame(rows)
    controls = {c.method: c for c in control_comparisons(cells)}
    assert sorted(controls) == ["edropout@p_init=0.3", "edropout@p_init=0.7"]
    for c in controls.values():  # paired within the point: 1 + 0.5 * seed, not across points (+-5)
        assert c.mean_difference == pytest.approx(1.5) and c.n_pairs == 3
    tests = paired_tests(cells)
    assert sorted(tests) == [("digits", "a", "l1_filter@p_init=0.3"), ("digits", "a", "l1_filter@p_init=0.7")]
    assert all(t.mean_difference == pytest.approx(1.5) for t in tests.values())
