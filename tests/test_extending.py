"""The README's "Extending the suite" recipes and the declared capabilities the study and report read."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pandas as pd
import pytest

from benchmark.cell.plugins import METHODS, discover
from benchmark.cell.runner import run_cell
from benchmark.core import metrics as M
from benchmark.core.errors import UserError
from benchmark.core.tracking import TrackingSettings
from benchmark.report.checklist import methods_tagged
from tests.conftest import ROOT, TINY_ARGS, mlflow_runs, run_cli

discover()


# -- capabilities ---------------------------------------------------------------------------------------------


def test_capabilities_are_declared_not_probed():
    shipped = {n: METHODS.get(n) for n in METHODS.names() if METHODS.get(n).source.startswith(str(ROOT / "baselines"))}
    assert len(shipped) == 19  # other tests of this worker may have registered throw-away methods
    controls = {"edropout_search_off", "edropout_search_noise", "edropout_shuffled", "edropout_scratch"}
    assert {n for n, spec in shipped.items() if spec.takes_sparsity} == set(shipped) - {"dense", "edropout"} - controls
    assert {n for n, spec in shipped.items() if "control" in spec.tags} == controls
    assert {shipped[n].control_of for n in controls} == {"edropout"}
    assert {n for n, spec in shipped.items() if spec.from_twin} == {"edropout_shuffled", "edropout_scratch"}
    assert {n for n, spec in shipped.items() if "reference" in spec.tags} == {"dense"}
    assert {n for n, spec in shipped.items() if "random" in spec.tags} == {"random_structured", "random_unstructured"}
    assert {n for n, spec in shipped.items() if "magnitude" in spec.tags} == {"global_magnitude", "layer_magnitude"}
    assert shipped["slimming"].needs_batchnorm and not shipped["l1_filter"].needs_batchnorm


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"tags": ["randm"]}, "tag 'randm' is not one of reference, random, magnitude, control"),
        ({"tags": "random"}, "tags must be a list of names"),
        ({"takes_sparsity": "yes"}, "takes_sparsity must be true or false, got 'yes'"),
        ({"takes_sparsity": True}, "takes_sparsity needs check_args"),
        ({"needs_batchnorm": 1}, "needs_batchnorm must be true or false, got 1"),
    ],
)
def test_a_malformed_capability_is_a_one_line_error(kwargs, message):
    from benchmark.api import register_method

    with pytest.raises(UserError, match=message):
        register_method("capability_probe", citation="test", granularity="none", schedule="none", **kwargs)


def test_a_method_that_needs_batchnorm_refuses_an_arch_without_it(tmp_path, mlflow_uri):
    out = tmp_path / "cell"
    proc = run_cli(
        "run",
        "--method",
        "slimming",
        "--arch",
        "test_convnext",
        "--out",
        str(out),
        *TINY_ARGS[:2],
        "--set",
        "data.input_size=32",
        "--quiet",
    )
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("error: ") and "'slimming' needs BatchNorm" in line and "'test_convnext'" in line
    assert not (out / "metrics.json").exists() and mlflow_runs(mlflow_uri) == []


def test_the_checklist_finds_baselines_by_tag_not_by_name():
    cells = pd.DataFrame(
        {"method": ["my_random", "global_magnitude", "l1_filter"], "tags": ["random", "magnitude", ""]}
    )
    assert methods_tagged(cells, "random") == ["my_random"]
    assert methods_tagged(cells, "magnitude") == ["global_magnitude"]
    assert methods_tagged(cells.drop(columns="tags"), "random") == []


OLD_PLUGIN = '''
"""A plugin written for 0.1: the old import paths, no takes_sparsity."""
from benchmark.methods import register_method
from benchmark.pruning import apply_masks, args_checker, magnitude_masks, post_training

check = args_checker()


@register_method("old_style", citation="test", granularity="unstructured", schedule="after_training",
                 check_args=check)
def old_style(ctx):
    args = check(ctx.cfg.method_args)
    return post_training(ctx, args, "unstructured", lambda m: apply_masks(magnitude_masks(m, args.sparsity, "global")))
'''


def test_a_plugin_written_for_the_old_layout_still_loads_with_its_operating_points(tmp_path):
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "old_style.py").write_text(OLD_PLUGIN)
    code = textwrap.dedent(f"""
        import json, warnings
        warnings.simplefilter("always")
        from benchmark.cell.plugins import BROKEN, discover, get_method
        discover([{str(folder)!r}])
        spec = get_method("old_style")
        print(json.dumps({{"takes_sparsity": spec.takes_sparsity, "broken": BROKEN}}))
    """)
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONWARNINGS": "always::DeprecationWarning"},
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"takes_sparsity": True, "broken": {}}
    assert "benchmark.methods is deprecated: import from benchmark.api" in proc.stderr


# -- add a dataset ----------------------------------------------------------------------------------------------

TINY_SHAPES = '''
"""tiny_shapes: four classes of synthetic 8x8 shapes (a test of the README's dataset recipe)."""

import numpy as np
import torch

from benchmark.cell.data.base import DatasetBundle, register_dataset, stratified_split
from benchmark.cell.data.digits import TensorImages
from benchmark.core.config import DataConfig


def _build(cfg: DataConfig, seed: int) -> DatasetBundle:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 60)
    images = rng.normal(0, 0.3, (len(labels), 1, 8, 8)).astype(np.float32)
    for k in range(4):
        images[labels == k, 0, 2 * k:2 * k + 2, :] += 2.0  # class k: a bright band at rows 2k, 2k+1
    split = stratified_split(labels, seed, cfg.val_fraction, cfg.test_fraction)
    x, y = torch.from_numpy(images), torch.from_numpy(labels)
    part = lambda idx: TensorImages(x[torch.from_numpy(idx)], y[torch.from_numpy(idx)])
    return DatasetBundle("tiny_shapes", part(split.train), part(split.val), part(split.test), num_classes=4,
                         in_chans=1, input_size=8, split=split)


register_dataset("tiny_shapes", build=_build, num_classes=4, in_chans=1, native_size=8, augment_default=False,
                 description="synthetic shapes, 8x8")
'''


def test_the_dataset_recipe_adds_a_dataset_with_one_file(repo_copy):
    (repo_copy / "benchmark" / "cell" / "data" / "tiny_shapes.py").write_text(TINY_SHAPES)
    env = {"PYTHONPATH": str(repo_copy)}
    listed = run_cli("list", "datasets", env=env, cwd=repo_copy)
    assert listed.returncode == 0 and "tiny_shapes" in listed.stdout and "synthetic shapes" in listed.stdout
    out = repo_copy / "results" / "shapes"
    proc = run_cli(
        "run",
        "--dataset",
        "tiny_shapes",
        "--arch",
        "test_resnet",
        "--no-track",
        "--out",
        str(out),
        *TINY_ARGS,
        env=env,
        cwd=repo_copy,
    )
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dataset"] == "tiny_shapes" and metrics["split_sizes"]["test"] == 48


# -- add a metric -----------------------------------------------------------------------------------------------


def test_every_number_a_cell_reports_is_in_the_metric_table(tiny_cfg, tmp_path):
    """A metric is one row of benchmark/core/metrics.py: no cell reports a quantity the table lacks."""
    tiny_cfg.method, tiny_cfg.model.arch = "edropout", "test_resnet"
    tiny_cfg.method_args = {"population": 4}
    numbers = dict(run_cell(tiny_cfg, tmp_path / "e", TrackingSettings(enabled=False), progress=False))
    tiny_cfg.method, tiny_cfg.method_args = "global_magnitude", {"sparsity": 0.5}
    numbers.update(run_cell(tiny_cfg, tmp_path / "g", TrackingSettings(enabled=False), progress=False))
    bookkeeping = {"seed"}
    reported = {k for k, v in numbers.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    assert reported - set(M.TABLE) - bookkeeping == set()
    for name in reported & set(M.TABLE):
        assert M.TABLE[name].label and M.TABLE[name].where in ("measure", "runner", "method", "derived")
    assert M.TOP1.show(97.5) == "97.50%" and M.PARAM_PRUNING_RATE.show(0.5) == "50.0"
    assert M.latency_speedup(1) is M.LATENCY_SPEEDUP_B1 and M.latency_ms(7) == "latency_ms_b7"


# -- add a report figure ----------------------------------------------------------------------------------------


def test_a_registered_figure_appears_in_the_report(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from benchmark.report import figures
    from benchmark.report.build import build_report
    from tests.test_report import write_study

    monkeypatch.setattr(figures, "FIGURES", list(figures.FIGURES))

    @figures.report_figure("seeds_per_method.png", "Seeds per method", "How many seeds finished.", data="cells")
    def seeds_per_method(cells, out_dir, name, colors):
        done = cells[cells["status"] == "finished"].groupby("method")["seed"].nunique()
        fig, ax = plt.subplots()
        ax.bar(done.index, done.values, color=[colors[m] for m in done.index])
        fig.savefig(out_dir / name)
        plt.close(fig)

    @figures.report_figure("always_fails.png", "Broken figure", "Never drawn.", data="groups")
    def always_fails(groups, out_dir, name, colors):
        raise RuntimeError("boom")

    results = write_study(tmp_path)
    summary = build_report(results, tmp_path / "out", "test", root=tmp_path)
    assert (
        "seeds_per_method.png" in summary.figures and (tmp_path / "out" / "figures" / "seeds_per_method.png").is_file()
    )
    assert any("Broken figure: not drawn (RuntimeError: boom)" in note for note in summary.notes)
    assert "Seeds per method" in (tmp_path / "out" / "report.md").read_text()
    with pytest.raises(ValueError, match="registered twice"):
        figures.report_figure("seeds_per_method.png", "again", "again")
