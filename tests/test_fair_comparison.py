"""The comparison is fair only if the baselines are the published methods and the rates are what was asked.

- global_magnitude removes exactly the weights torch.nn.utils.prune.global_unstructured removes;
- l1_filter removes exactly the channels torch-pruning's L1 magnitude importance ranks lowest;
- `--sparsity matched` reads EDropout's rate for the same cell, and bad rates or variants are
  one-line errors before anything runs; an architecture torch-pruning cannot handle is a
  one-line error too, not a traceback.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.utils.prune as torch_prune
import torch_pruning as tp

from benchmark.cell import data as data_mod
from benchmark.cell import models
from benchmark.cell.context import CellContext, checkpoint_path
from benchmark.cell.pruning import prunable_weights, prune_structured, weights_to_remove
from benchmark.cell.runner import identify, matched_folder, resolve
from benchmark.core.config import RunConfig
from benchmark.core.errors import UserError
from benchmark.core.tracking import NullTracker
from edropout.units import classifier_of
from tests.conftest import TINY_ARGS, mlflow_runs, run_cli, run_cli_here


@pytest.fixture(autouse=True)
def private_stores(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCHMARK_CHECKPOINTS", str(tmp_path / "checkpoints"))
    monkeypatch.setenv("BENCHMARK_RESULTS", str(tmp_path / "results"))


class NoTrainContext(CellContext):
    """The harness's context with training switched off: what a method does to the weights is all that changes."""

    def train(self, model, epochs=None, hooks=(), desc="train"):
        return []


def _context(method: str, sparsity: float, seed: int = 0) -> tuple[NoTrainContext, object]:
    """A real cell (resnet18, digits at 8x8) whose dense network is the untrained, seeded model."""
    cfg = RunConfig(method=method, seed=seed)
    cfg.method_args = {"sparsity": sparsity}
    cfg.data.input_size = 8
    cfg.train.epochs = 2
    cfg, spec = resolve(cfg)
    bundle = data_mod.build_dataset(cfg.data, cfg.seed)
    torch.manual_seed(seed)
    model = models.create_model(cfg.model, bundle.num_classes, bundle.in_chans, bundle.input_size)
    return NoTrainContext(cfg, bundle, model, NullTracker(), progress=False), spec


def test_global_magnitude_masks_equal_torch_global_unstructured():
    ctx, spec = _context("global_magnitude", 0.5)
    dense = copy.deepcopy(ctx.model)

    reference = copy.deepcopy(dense)
    k = weights_to_remove(reference, 0.5)
    torch_prune.global_unstructured(
        [(m, "weight") for m in prunable_weights(reference)], pruning_method=torch_prune.L1Unstructured, amount=k
    )

    pruned = spec.fn(ctx).model  # the registered method, masks folded in by make_permanent
    ref_modules, dense_modules = dict(reference.named_modules()), dict(dense.named_modules())
    compared, removed = 0, 0
    for name, module in pruned.named_modules():
        if not isinstance(module, (nn.Conv2d, nn.Linear)):
            continue
        expected_keep = ref_modules[name].weight_mask.bool()
        assert torch.equal(module.weight != 0, expected_keep), f"{name}: masks differ"
        assert torch.equal(module.weight[expected_keep], dense_modules[name].weight[expected_keep])
        compared += 1
        removed += int((~expected_keep).sum())
    assert compared == len(prunable_weights(dense)) == 21  # 20 convs + the classifier, all compared
    assert removed == k


def _distinct_bn_weights(model: nn.Module, generator: torch.Generator) -> None:
    """Give every BatchNorm channel its own scale, so a surviving channel can be told by its value."""
    with torch.no_grad():
        for bn in model.modules():
            if isinstance(bn, nn.BatchNorm2d):
                n = bn.num_features
                bn.weight.copy_(torch.linspace(0.5, 1.5, n)[torch.randperm(n, generator=generator)])


def test_l1_filter_removes_the_channels_torch_pruning_l1_importance_ranks_lowest():
    ctx, spec = _context("l1_filter", 0.5)
    _distinct_bn_weights(ctx.model, torch.Generator().manual_seed(1))
    dense = copy.deepcopy(ctx.model).eval()
    example = ctx.example_inputs()

    pruned = spec.fn(ctx).model
    assert sum(p.numel() for p in pruned.parameters()) < 0.52 * sum(p.numel() for p in dense.parameters())

    graph = tp.DependencyGraph().build_dependency(dense, example_inputs=example)
    importance = tp.importance.MagnitudeImportance(p=1, normalizer=None, group_reduction="first")
    pruned_modules, dense_names = dict(pruned.named_modules()), {m: n for n, m in dense.named_modules()}
    checked = 0
    for group in graph.get_all_groups(ignored_layers=[classifier_of(dense)], root_module_types=[nn.Conv2d, nn.Linear]):
        scores = importance(group)
        bn = next(dep.target.module for dep, _ in group if isinstance(dep.target.module, nn.BatchNorm2d))
        survivor = pruned_modules[dense_names[bn]]
        kept = [int((bn.weight == value).nonzero()) for value in survivor.weight]
        assert kept == sorted(kept), "channels are kept in their original order"
        expected = sorted(torch.topk(scores, len(kept)).indices.tolist())
        assert kept == expected, (
            f"group of {dense_names[group[0].dep.target.module]}: "
            f"l1_filter kept {kept}, torch-pruning's L1 ranking keeps {expected}"
        )
        assert len(kept) < bn.num_features  # every group lost channels (local pruning, same ratio)
        checked += 1
        root = group[0].dep.target.module
        # Li et al.'s criterion: the L1 norm of each filter of the group's first layer, nothing else
        assert torch.allclose(scores, root.weight.detach().abs().flatten(1).sum(1))
        if dense_names[root] == "conv1":
            # the stem's filters are whole (one input channel): the survivors are the top-k filters themselves
            assert torch.equal(pruned.conv1.weight, dense.conv1.weight[expected])
    # resnet18: one coupled group per residual chain (stem + layer1, layer2, layer3, layer4: each
    # stage's shortcut and block outputs share channels) and one per block's inner conv (8)
    assert checked == 12


class _MostlyUnreachable(nn.Module):
    """A small conv net next to a lookup table that is not in its forward pass (so not prunable)."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16)
        self.fc = nn.Linear(16, 10)
        self.table = nn.Embedding(1000, 100)

    def forward(self, x):
        return self.fc(self.bn(self.conv(x)).relu().mean((2, 3)))


def test_structured_pruning_that_cannot_reach_the_rate_is_a_user_error():
    with pytest.raises(UserError, match=r"cannot reach a parameter pruning rate of 0\.500 \(closest 0\.00"):
        prune_structured(
            _MostlyUnreachable(),
            torch.zeros(1, 1, 8, 8),
            tp.importance.MagnitudeImportance(p=1),
            0.5,
            global_pruning=False,
        )


# -- the command line -----------------------------------------------------------------------------------


def _edropout_folder(results, seed: int = 0):
    """Where `--sparsity matched` looks for EDropout's result of the TINY_ARGS cell (under `results`)."""
    cfg = RunConfig(method="global_magnitude", seed=seed)
    cfg.train.epochs, cfg.data.input_size = 1, 8
    cfg.measure.latency_repeats, cfg.measure.latency_warmup = 2, 1
    folder = matched_folder(cfg)
    assert folder.is_relative_to(results)
    return folder


def _fake_edropout_result(results, rate=0.42, folder=None, **config) -> str:
    """An EDropout result of the TINY_ARGS cell (its recorded config: `config` changes it) at `folder`."""
    folder = folder or _edropout_folder(results)
    folder.mkdir(parents=True)
    recorded = {"method": "edropout", "seed": 0, "data": {"name": "digits", "input_size": 8}, "model": {}}
    recorded["model"]["arch"] = config.pop("arch", "resnet18")
    recorded.update(config)
    path = folder / "metrics.json"
    path.write_text(
        json.dumps(
            {
                "method": "edropout",
                "param_pruning_rate": rate,
                "config_hash": "feedbeef12345678",
                "status": "finished",
                "config": recorded,
            }
        )
    )
    return str(folder.relative_to(results))  # results record it relative to the results root


def test_matched_sparsity_reads_edropout_result_of_the_same_cell(tmp_path):
    path = _fake_edropout_result(tmp_path / "results")
    proc = run_cli_here("config", "--method", "global_magnitude", "--sparsity", "matched", *TINY_ARGS[:-1])
    assert proc.returncode == 0, proc.stderr
    args = json.loads(proc.stdout)["config"]["method_args"]
    assert args["sparsity"] == pytest.approx(0.42)
    assert path in args["matched_from"] and "feedbeef12345678" in args["matched_from"]

    other_seed = run_cli_here(
        "config", "--method", "global_magnitude", "--sparsity", "matched", "--seed", "1", *TINY_ARGS[:-1]
    )
    assert other_seed.returncode == 2 and "seed1" in other_seed.stderr  # a rate is never borrowed across seeds


def test_matched_sparsity_without_edropout_result_is_one_line_exit_2(tmp_path, mlflow_uri):
    out = tmp_path / "cell"
    proc = run_cli_here("run", "--method", "global_magnitude", "--sparsity", "matched", "--out", str(out), *TINY_ARGS)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    missing = _edropout_folder(tmp_path / "results") / "metrics.json"
    assert str(missing) in lines[0] and "--method edropout" in lines[0]
    assert not out.exists() or not (out / "metrics.json").exists()
    assert mlflow_runs(mlflow_uri) == []


@pytest.mark.parametrize(
    "recorded, problem",
    [
        ({"arch": "resnet50"}, "model.arch=resnet50, not resnet18"),
        ({"seed": 1}, "seed=1, not 0"),
        ({"method": "snip"}, "'snip' result, not EDropout's"),
    ],
)
def test_matched_rate_from_another_cell_is_refused(recorded, problem, tmp_path):
    """A rate named with matched_from is used only when it is EDropout's for this arch, dataset, seed and
    settings; otherwise one line says what differs and the command that makes the right cell."""
    folder = tmp_path / "results" / "elsewhere"
    _fake_edropout_result(tmp_path / "results", folder=folder, **recorded)
    args = ["--method", "global_magnitude", "--sparsity", "matched", "--set", f"method_args.matched_from={folder}"]
    proc = run_cli_here("config", *args, *TINY_ARGS[:-1])
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert problem in proc.stderr and "--arch resnet18 --dataset digits --seed 0" in proc.stderr


def test_matched_rate_error_gives_the_command_that_makes_the_right_cell(tmp_path, mlflow_uri):
    """Running the command the error prints (a test_resnet cell at seed 1 and 1 epoch, not resnet18's
    defaults) writes exactly the EDropout result the matched cell then reads."""
    args = ["--arch", "test_resnet", "--seed", "1", *TINY_ARGS[:-1]]
    first = run_cli_here("config", "--method", "global_magnitude", "--sparsity", "matched", *args)
    assert first.returncode == 2, first.stderr
    command = re.search(r"\((python -m benchmark run [^)]*)\)", first.stderr).group(1)
    assert "--method edropout --arch test_resnet --dataset digits --seed 1" in command
    assert "--set train.epochs=1" in command and "--set data.input_size=8" in command
    made = run_cli_here(*shlex.split(command)[3:], "--quiet")
    assert made.returncode == 0, made.stderr
    then = run_cli_here("config", "--method", "global_magnitude", "--sparsity", "matched", *args)
    assert then.returncode == 0, then.stderr
    out = Path(shlex.split(command)[-1])
    rate = json.loads((out / "metrics.json").read_text())["param_pruning_rate"]
    assert json.loads(then.stdout)["config"]["method_args"]["sparsity"] == pytest.approx(rate)


BAD_RATES = {
    "rate 1.0": (["--sparsity", "1.0"], ["1.0", "[0, 1)", "'matched'"]),
    "negative rate": (["--sparsity", "-0.1"], ["-0.1", "[0, 1)", "'matched'"]),
    "not a number": (["--sparsity", "abc"], ["'abc'", "[0, 1)", "'matched'"]),
    "unknown variant": (["--set", "method_args.variant=odd"], ["'odd'", "none, shuffled, reinit"]),
}


@pytest.mark.parametrize("case", sorted(BAD_RATES))
def test_bad_rates_and_variants_are_one_line_exit_2_and_leave_nothing(case, tmp_path, mlflow_uri):
    extra, expected = BAD_RATES[case]
    out = tmp_path / "cell"
    proc = run_cli_here("run", "--method", "global_magnitude", "--out", str(out), *TINY_ARGS, *extra)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for text in expected:
        assert text in lines[0], lines[0]
    assert not (out / "metrics.json").exists()
    assert mlflow_runs(mlflow_uri) == []


def test_structured_method_on_an_arch_torch_pruning_cannot_handle_is_one_line_exit_2(tmp_path, mlflow_uri):
    """dpn68's dual-path concatenation defeats torch-pruning's dependency graph (TypeError inside it).

    The method declares itself structured with a target rate, so a dry run on the untrained network
    refuses the arch before any training: no dense network is trained or stored, no run is opened.
    """
    from benchmark.cli import build_parser, config_from_args

    argv = [
        "--method",
        "l1_filter",
        "--arch",
        "dpn68",
        "--set",
        "data.input_size=32",
        "--epochs",
        "1",
        "--set",
        "measure.latency_repeats=2",
        "--set",
        "measure.latency_warmup=1",
    ]
    cfg = identify(config_from_args(build_parser().parse_args(["config", *argv]))).config
    out = tmp_path / "cell"
    proc = run_cli("run", *argv, "--quiet", "--out", str(out))
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "arch 'dpn68'" in lines[0] and "unstructured method" in lines[0]
    assert not out.exists()  # nothing half-written
    assert not checkpoint_path(cfg).exists()  # refused before the dense network was trained
    assert mlflow_runs(mlflow_uri) == []
