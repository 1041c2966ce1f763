"""params.yaml profiles, the DVC pipeline in a copy of the repo, and the results table."""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from benchmark.errors import UserError
from benchmark.report import results_table
from benchmark.study import get_profile, load_params, set_active_profile
from tests.conftest import ROOT, mlflow_runs


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


@pytest.mark.parametrize("change,message", [
    ({"seeds": []}, "profiles.p.seeds must be a non-empty list"),
    ({"epochs": -1}, "profiles.p.epochs must be a positive integer, got -1"),
    ({"datasets": ["mnst"]}, "unknown dataset 'mnst'"),
    ({"archs": ["resnet181"]}, "unknown arch 'resnet181'"),
    ({"seeds": [0, 0]}, "lists a value twice"),
    ({"set": {"train.lrr": 1}}, "unknown config key 'train.lrr'"),
    ({"set": {"train.batch_size": 0}}, "train.batch_size"),
    ({"epoch": 3}, "unknown key in profiles.p 'epoch'"),
])
def test_invalid_profiles_are_rejected_with_key_and_reason(change, message):
    with pytest.raises(UserError, match=message.replace("[", "\\[").replace("]", "\\]")):
        get_profile(_params(**change))


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


def test_results_table_shows_mean_and_spread_over_seeds():
    rows = [{"dataset": "digits", "arch": "resnet18", "method": "dense", "top1": t, "top5": 100.0,
             "params": 11e6, "macs": 35e6, "latency_ms_b1": 1.0, "latency_ms_b64": 10.0, "train_seconds": 5}
            for t in (97.0, 99.0)]
    table = results_table(rows)
    assert "| digits | resnet18 | dense | 2 | 98.00 ± 1.41 | 100.00 | 11.000 |" in table


@pytest.fixture
def repo_copy(tmp_path):
    """The tracked project files in a fresh git repository: what a new clone has (no results, no MLflow db)."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    dest = tmp_path / "repo"
    for name in files:
        if name.startswith(("results/", "data/", "reports/")) or name == "dvc.lock" or not (ROOT / name).is_file():
            continue
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, dest / name)
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.org"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "fresh clone"]):
        subprocess.run(git + args, cwd=dest, check=True, capture_output=True)
    return dest


def _dvc(repo: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "MLFLOW_TRACKING_URI": f"sqlite:///{repo / 'mlflow.db'}", "PYTHONPATH": str(repo)}
    return subprocess.run([str(Path(sys.executable).parent / "dvc"), *args], cwd=repo, capture_output=True,
                          text=True, env=env, timeout=900)


def test_dvc_repro_runs_the_smoke_study_then_does_nothing(repo_copy):
    set_active_profile(repo_copy / "params.yaml", "smoke")
    first = _dvc(repo_copy, "repro")
    assert first.returncode == 0, first.stdout + first.stderr
    metrics = repo_copy / "results" / "dense" / "digits" / "resnet18" / "seed0" / "metrics.json"
    assert metrics.is_file() and (metrics.parent / "model.pt").is_file()
    report = (repo_copy / "reports" / "results.md").read_text()
    assert "| digits | resnet18 | dense | 1 |" in report
    assert (repo_copy / "data" / "prepared" / "digits" / "seed0.json").is_file()
    (run,) = mlflow_runs(f"sqlite:///{repo_copy / 'mlflow.db'}")
    assert run.info.status == "FINISHED"

    start = time.perf_counter()
    second = _dvc(repo_copy, "repro")
    assert second.returncode == 0
    assert "Data and pipelines are up to date" in second.stdout
    assert time.perf_counter() - start < 10
    assert len(mlflow_runs(f"sqlite:///{repo_copy / 'mlflow.db'}")) == 1


def test_dvc_repro_rejects_an_invalid_study_before_running(repo_copy):
    params = yaml.safe_load((repo_copy / "params.yaml").read_text())
    params["profile"] = "smoke"
    params["profiles"]["smoke"]["epochs"] = -2
    (repo_copy / "params.yaml").write_text(yaml.safe_dump(params))
    proc = _dvc(repo_copy, "repro")
    assert proc.returncode != 0
    assert "profiles.smoke.epochs must be a positive integer, got -2" in proc.stdout + proc.stderr
    assert not (repo_copy / "results").exists() and not (repo_copy / "mlflow.db").exists()
