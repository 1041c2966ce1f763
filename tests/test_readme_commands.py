"""The README's commands work as written: its `dvc exp run -S` forms run as real DVC experiments on this
repository's params.yaml and change what the study reads, and every source path it names exists."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()
PROSE = re.sub(r"```.*?```", "", README, flags=re.DOTALL)  # inline code pairs up only outside fenced blocks
VENV_BIN = Path(sys.executable).parent

# The stage the experiments run: the profile the study would run, as benchmark.study.profiles reads it.
SHOW_PROFILE = (
    "import json; from benchmark.study.profiles import get_profile, load_params; "
    "p = get_profile(load_params('params.yaml')); "
    "json.dump({'name': p.name, 'method_args': p.method_args}, open('profile.json', 'w'))"
)


def _documented(prefix: str) -> list[str]:
    """Every inline-code command of README.md that starts with `prefix` (line breaks inside it joined), except
    placeholders with '...'."""
    spans = (" ".join(span.split()) for span in re.findall(r"`([^`]+)`", PROSE))
    return sorted({span for span in spans if span.startswith(prefix) and "..." not in span})


EXP_RUNS = _documented("dvc exp run -S")


def test_the_readme_documents_both_experiment_forms():
    assert "dvc exp run -S profile=smoke" in EXP_RUNS
    assert any("method_args.edropout.population=16" in command for command in EXP_RUNS), EXP_RUNS


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


@pytest.mark.parametrize("command", EXP_RUNS)
def test_documented_dvc_exp_run_form_works(command, tmp_path):
    """A git+DVC repository with this params.yaml and one stage that writes the profile the study would read;
    the README's command runs as written (a real `dvc exp run`) and the profile it produces has the change."""
    repo = tmp_path / "repo"
    repo.mkdir()
    env = {
        **os.environ,
        "PATH": f"{VENV_BIN}:{os.environ['PATH']}",
        "PYTHONPATH": str(ROOT),
        "GIT_AUTHOR_NAME": "test",
        "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "test",
        "GIT_COMMITTER_EMAIL": "test@example.com",
        "DVC_NO_ANALYTICS": "1",
    }
    shutil.copyfile(ROOT / "params.yaml", repo / "params.yaml")
    stage = {"cmd": f'python -c "{SHOW_PROFILE}"', "params": ["profile", "profiles"], "outs": ["profile.json"]}
    (repo / "dvc.yaml").write_text(json.dumps({"stages": {"show": stage}}))
    _git(repo, "init", "-q")
    subprocess.run([VENV_BIN / "dvc", "init", "-q"], cwd=repo, check=True, env=env)
    _git(repo, "add", "-A")
    _git(repo, "-c", "user.name=test", "-c", "user.email=test@example.com", "commit", "-q", "-m", "study")

    argv = shlex.split(command)
    run = subprocess.run([VENV_BIN / argv[0], *argv[1:]], cwd=repo, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    profile = json.loads((repo / "profile.json").read_text())
    override = argv[argv.index("-S") + 1]
    if override == "profile=smoke":
        assert profile["name"] == "smoke"
    else:
        assert profile["name"] == "default" and profile["method_args"]["edropout"]["population"] == 16


SOURCE_ROOTS = ("benchmark/", "pipelines/", "edropout/", "baselines/", "tests/")


def test_every_source_path_the_readme_names_exists():
    """Paths into the code (`benchmark/core/config.py`, `benchmark/report/`, ...), not placeholders or outputs."""
    named = {span for span in re.findall(r"`([^`\s]+)`", PROSE) if span.startswith(SOURCE_ROOTS)}
    named = {path.split("::")[0].rstrip(".,:;") for path in named if not re.search(r"[<>*{}]", path)}
    assert len(named) > 10
    missing = sorted(path for path in named if not (ROOT / path).exists())
    assert not missing, missing
