"""params.yaml profiles, the DVC pipeline in a copy of the repo, and the results table."""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from benchmark.cell.plugins import discover, get_method
from benchmark.core.errors import UserError
from benchmark.study.profiles import get_profile, load_params, set_active_profile
from tests.conftest import ROOT, dvc, mlflow_runs


def test_the_shipped_profiles_are_valid():
    params = load_params(ROOT / "params.yaml")
    assert {"smoke", "default", "paper"} <= set(params["profiles"])
    default = get_profile(params, "default")
    assert default.datasets == ["digits"] and len(default.archs) >= 2 and len(default.seeds) >= 3
    paper = get_profile(params, "paper")
    assert paper.epochs == 200 and paper.overrides["train.optimizer"] == "adadelta"


def _params(**profile):
    base = {"datasets": ["digits"], "archs": ["resnet18"], "seeds": [0], "epochs": 1}
    return {"profile": "p", "profiles": {"p": {**base, **profile}}}


@pytest.mark.parametrize(
    "change,message",
    [
        ({"seeds": []}, "profiles.p.seeds must be a non-empty list"),
        ({"epochs": -1}, "profiles.p.epochs must be a positive integer, got -1"),
        ({"datasets": ["mnst"]}, "unknown dataset 'mnst'"),
        ({"archs": ["resnet181"]}, "unknown arch 'resnet181'"),
        ({"seeds": [0, 0]}, "lists a value twice"),
        ({"set": {"train.lrr": 1}}, "unknown config key 'train.lrr'"),
        ({"set": {"train.batch_size": 0}}, "train.batch_size"),
        ({"epoch": 3}, "unknown key in profiles.p 'epoch'"),
        ({"methods": ["l1_filtre"]}, "profiles.p.methods: unknown method 'l1_filtre'; did you mean: l1_filter"),
        ({"methods": []}, "profiles.p.methods must be a non-empty list"),
        ({"operating_points": [1.5]}, "profiles.p.operating_points: 1.5 is not a rate in [0, 1) or 'matched'"),
        ({"methods": ["l1_filter"], "operating_points": ["matched"]}, "'edropout' must be in profiles.p.methods"),
        ({"methods": ["l1_filter"], "method_args": {"snip": {}}}, "method_args: 'snip' is not in profiles.p.methods"),
        ({"method_args": {"edropout": {"kappa": -1}}}, "profiles.p.method_args.edropout: bad method_args"),
        ({"method_args": {"l1_filter": {"sparsity": 0.3}}}, "set rates with profiles.p.operating_points"),
        ({"finetune_epochs": -1}, "profiles.p.finetune_epochs must be an integer >= 0, got -1"),
        ({"executor": {"backend": "dask"}}, "executor.backend: unknown backend 'dask'"),
        ({"executor": {"workers": 0}}, "executor.workers must be a positive integer, got 0"),
        ({"executor": {"gpus": 1}}, "unknown setting 'gpus'"),
        ({"edropout_points": [{"p_init": 2.0}]}, "edropout_points: p_init=2: bad method_args for edropout"),
        ({"edropout_points": [{"p_init": 0.3}, {"p_init": 0.3}]}, "edropout_points lists a point twice"),
        ({"edropout_points": [{"sparsity": 0.3}]}, "move it with p_init, not sparsity"),
        ({"edropout_points": [0.3]}, "edropout_points must be a non-empty list of EDropout settings"),
        ({"methods": ["l1_filter"], "edropout_points": [{"p_init": 0.3}]}, "'edropout' must be in profiles.p.methods"),
    ],
)
def test_invalid_profiles_are_rejected_with_key_and_reason(change, message):
    with pytest.raises(UserError, match=re.escape(message)):
        get_profile(_params(**change))


def test_a_profile_expands_to_every_method_rate_and_seed(tmp_path):
    from benchmark.core.config import config_hash
    from benchmark.study.cells import dense_cells, method_cells

    profile = get_profile(
        _params(
            seeds=[0, 1],
            methods=["dense", "edropout", "l1_filter", "snip"],
            operating_points=[0.5, "matched"],
            finetune_epochs=2,
            method_args={"l1_filter": {"round_to": 4}},
        )
    )
    assert len(dense_cells(profile, tmp_path)) == 2
    cells = method_cells(profile, tmp_path)
    labels = sorted(c.label for c in cells)
    assert len(cells) == 2 * (1 + 2 * 2)  # edropout at its own rate; two methods x two points
    assert "l1_filter digits/resnet18 seed1 @matched" in labels and "edropout digits/resnet18 seed0" in labels
    l1 = next(c for c in cells if c.label == "l1_filter digits/resnet18 seed0 @0.5")
    assert l1.config.method_args == {"round_to": 4, "sparsity": 0.5, "finetune_epochs": 2}
    assert (
        l1.out == tmp_path / "cells" / "digits" / "resnet18" / "seed0" / "l1_filter" / f"s0.5-{config_hash(l1.config)}"
    )
    snip = next(c for c in cells if c.label == "snip digits/resnet18 seed0 @matched")
    edropout = next(c for c in cells if c.label == "edropout digits/resnet18 seed0")
    assert (
        snip.after
        == edropout.out
        == (tmp_path / "cells" / "digits" / "resnet18" / "seed0" / "edropout" / f"own-{config_hash(edropout.config)}")
    )


def test_edropout_points_sweep_edropout_its_controls_and_matched_cells(tmp_path):
    """Each EDropout point is one EDropout cell; its controls take the same settings (they inherit
    EDropout's method_args) and `matched` baselines and `from_twin` controls follow each point."""
    from benchmark.study.aggregate import cell_row
    from benchmark.study.cells import method_cells

    profile = get_profile(
        _params(
            methods=["edropout", "edropout_search_off", "edropout_shuffled", "l1_filter"],
            operating_points=[0.5, "matched"],
            method_args={"edropout": {"population": 6}},
            edropout_points=[{"p_init": 0.3}, {"p_init": 0.7}],
        )
    )
    cells = {c.operating_point + " " + c.config.method: c for c in method_cells(profile, tmp_path)}
    assert sorted(cells) == sorted(
        [
            f"{op} {m}"
            for p in ("p_init=0.3", "p_init=0.7")
            for op, m in (
                (f"edropout@{p}", "edropout"),
                (f"edropout_search_off@{p}", "edropout_search_off"),
                (f"edropout_shuffled@{p}", "edropout_shuffled"),
                (f"matched@{p}", "l1_filter"),
            )
        ]
        + ["0.5 l1_filter"]
    )
    for p in (0.3, 0.7):
        ours = cells[f"edropout@p_init={p} edropout"]
        assert ours.config.method_args == {"population": 6, "p_init": p}
        assert cells[f"edropout_search_off@p_init={p} edropout_search_off"].config.method_args == {
            "population": 6,
            "p_init": p,
        }
        assert cells[f"edropout_shuffled@p_init={p} edropout_shuffled"].after == ours.out
        assert cells[f"matched@p_init={p} l1_filter"].after == ours.out
        assert cell_row(cells[f"matched@p_init={p} l1_filter"])["edropout_point"] == f"p_init={p}"
    assert len({c.out for c in cells.values()}) == len(cells)  # every cell has its own folder


def test_unknown_profile_lists_the_valid_ones():
    with pytest.raises(UserError, match="unknown profile 'smok'; did you mean: smoke"):
        get_profile(load_params(ROOT / "params.yaml"), "smok")


def test_set_active_profile_keeps_comments(tmp_path):
    path = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", path)
    set_active_profile(path, "smoke")
    text = path.read_text()
    assert yaml.safe_load(text)["profile"] == "smoke" and "# CI:" in text
    before = path.read_text()
    with pytest.raises(UserError):
        set_active_profile(path, "nope")
    assert path.read_text() == before  # a rejected name leaves the file untouched


def _run_ids(repo: Path) -> dict[str, str]:
    return {
        str(p.parent.relative_to(repo)): json.loads(p.read_text())["mlflow_run_id"]
        for p in (repo / "results").rglob("metrics.json")
    }


# Every method through the scheduler is tests/test_determinism.py's job (the whole smoke profile);
# here DVC's caching and resume matter, so the smoke profile keeps one method of each kind: the dense
# reference, EDropout and a control that reads it, a structured and an unstructured method (both rates).
DVC_METHODS = ["dense", "edropout", "edropout_search_off", "random_structured", "global_magnitude"]


def test_dvc_repro_runs_the_smoke_study_then_only_what_changed(repo_copy):
    set_active_profile(repo_copy / "params.yaml", "smoke")
    params = yaml.safe_load((repo_copy / "params.yaml").read_text())
    params["profiles"]["smoke"]["methods"] = DVC_METHODS
    (repo_copy / "params.yaml").write_text(yaml.safe_dump(params))
    first = dvc(repo_copy, "repro")
    assert first.returncode == 0, first.stdout + first.stderr
    methods = set(DVC_METHODS)
    discover()
    # one cell per own-rate method (dense, edropout, its controls); two (0.5 and matched) per method taking a rate
    expected = sum(2 if get_method(m).takes_sparsity else 1 for m in methods)
    table = pd.read_csv(repo_copy / "reports" / "results.csv")
    assert len(table) == expected and set(table["status"]) == {"finished"}
    assert set(table["method"]) == methods
    assert (repo_copy / "data" / "prepared" / "digits" / "seed0.json").is_file()
    for name in ("report.md", "report.html", "metrics.json"):
        assert (repo_copy / "reports" / name).is_file(), name
    uri = f"sqlite:///{repo_copy / 'mlflow.db'}"
    runs = mlflow_runs(uri)
    children = [r for r in runs if r.data.tags.get("kind") != "study"]
    (parent,) = [r for r in runs if r.data.tags.get("kind") == "study"]
    assert len(children) == expected and {r.info.status for r in children} == {"FINISHED"}
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parent.info.run_id}
    before = _run_ids(repo_copy)

    start = time.perf_counter()
    second = dvc(repo_copy, "repro")
    assert second.returncode == 0
    assert "Data and pipelines are up to date" in second.stdout
    assert time.perf_counter() - start < 10
    assert len(mlflow_runs(uri)) == len(runs)

    # code outside the cell layer changes (report, error messages, tracking, scheduling): the stages run
    # again, and not one cell does
    for name in (
        "benchmark/report/render.py",
        "benchmark/core/errors.py",
        "benchmark/core/tracking.py",
        "benchmark/study/scheduler.py",
    ):
        path = repo_copy / name
        path.write_text(path.read_text().replace('"""', '"""Edited. ', 1))
    edited = dvc(repo_copy, "repro")
    assert edited.returncode == 0, edited.stdout + edited.stderr
    output = edited.stdout + edited.stderr
    assert "Running stage 'cells'" in output and "Running stage 'report'" in output
    assert f"cells: {expected - 1} cells, {expected - 1} already done, 0 to run" in output
    assert _run_ids(repo_copy) == before and len(mlflow_runs(uri)) == len(runs)

    # one method's settings change: only that method's cells run, beside the earlier results
    params = yaml.safe_load((repo_copy / "params.yaml").read_text())
    params["profiles"]["smoke"]["method_args"] = {"random_structured": {"round_to": 2}}
    (repo_copy / "params.yaml").write_text(yaml.safe_dump(params))
    third = dvc(repo_copy, "repro")
    assert third.returncode == 0, third.stdout + third.stderr
    after = _run_ids(repo_copy)
    assert {cell: after[cell] for cell in before} == before  # every earlier result is still there, untouched
    new = sorted(cell.rsplit("-", 1)[0] for cell in set(after) - set(before))
    assert new == [
        "results/cells/digits/test_resnet/seed0/random_structured/matched",
        "results/cells/digits/test_resnet/seed0/random_structured/s0.5",
    ]
    table = pd.read_csv(repo_copy / "reports" / "results.csv")  # the report shows the profile as it is now
    assert len(table) == expected and set(table["status"]) == {"finished"}
    assert {d for d in table["result_dir"] if "random_structured" in d} <= set(after)

    # what-ifs as DVC experiments, compared side by side
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@e.org", "commit", "-qam", "settings"],
        cwd=repo_copy,
        check=True,
    )
    exp = dvc(repo_copy, "exp", "run", "-S", "profiles.smoke.method_args.random_structured.round_to=4")
    assert exp.returncode == 0, exp.stdout + exp.stderr
    show = dvc(repo_copy, "exp", "show", "--csv", "--no-pager")
    assert show.returncode == 0, show.stderr
    assert "round_to" in show.stdout and len(show.stdout.splitlines()) >= 3  # header, workspace/commit, experiment


def test_dvc_repro_rejects_an_invalid_study_before_running(repo_copy):
    params = yaml.safe_load((repo_copy / "params.yaml").read_text())
    params["profile"] = "smoke"
    params["profiles"]["smoke"]["epochs"] = -2
    (repo_copy / "params.yaml").write_text(yaml.safe_dump(params))
    proc = dvc(repo_copy, "repro")
    assert proc.returncode != 0
    assert "profiles.smoke.epochs must be a positive integer, got -2" in proc.stdout + proc.stderr
    assert not (repo_copy / "results").exists() and not (repo_copy / "mlflow.db").exists()


@pytest.mark.parametrize(
    "change,message",
    [
        ({"methods": ["l1_filter", "magic"]}, "profiles.smoke.methods: unknown method 'magic'"),
        ({"seeds": []}, "profiles.smoke.seeds must be a non-empty list"),
        ({"epochs": -3}, "profiles.smoke.epochs must be a positive integer, got -3"),
    ],
)
def test_the_cells_stage_rejects_an_invalid_study_before_any_cell(repo_copy, change, message):
    params = yaml.safe_load((repo_copy / "params.yaml").read_text())
    params["profile"] = "smoke"
    params["profiles"]["smoke"].update(change)
    (repo_copy / "params.yaml").write_text(yaml.safe_dump(params))
    proc = subprocess.run(
        [sys.executable, "-m", "pipelines.cells"],
        cwd=repo_copy,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(repo_copy)},
    )
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].startswith(f"error: params.yaml: {message}")
    assert not (repo_copy / "results").exists()


def test_an_unknown_profile_is_rejected_by_the_stages(repo_copy):
    params = (repo_copy / "params.yaml").read_text().replace("profile: default", "profile: defualt")
    (repo_copy / "params.yaml").write_text(params)
    proc = subprocess.run(
        [sys.executable, "-m", "pipelines.prepare"],
        cwd=repo_copy,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(repo_copy)},
    )
    assert proc.returncode == 2 and "unknown profile 'defualt'; did you mean: default" in proc.stderr
