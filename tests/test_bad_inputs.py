"""Bad input is one `error:` line and exit code 2, before anything runs or is written (issue 14).

In-process through the command line's `config` subcommand (which checks a cell fully and runs nothing),
and through the profile reader, so the whole set takes seconds.
"""

from __future__ import annotations

import pytest

from benchmark.cli import main
from benchmark.core.errors import UserError
from benchmark.study.profiles import get_profile

BASE = ["config", "--arch", "test_resnet", "--set", "data.input_size=8"]

FLOAT_KEYS = [
    "train.lr",
    "train.weight_decay",
    "train.momentum",
    "train.rho",
    "train.eps",
    "train.gamma",
    "model.drop_rate",
    "data.val_fraction",
    "data.test_fraction",
    "method_args.sparsity",
]
NON_FINITE = [".nan", ".inf", "-.inf"]

BAD_SETS = [(f"{key}={value}", key) for key in FLOAT_KEYS for value in NON_FINITE] + [
    ("seed=4294967296", "seed"),  # numpy's seed range ends at 2**32 - 1
    ("seed=9223372036854775808", "seed"),
    ("seed=-1", "seed"),
    ("seed=100000000000000000000000000000", "seed"),
    ("train.momentum=1.5", "train.momentum"),
    ("train.momentum=-0.1", "train.momentum"),
    ("train.rho=1.0", "train.rho"),
    ("train.eps=0", "train.eps"),
    ("train.gamma=-1", "train.gamma"),
    ("model.drop_rate=1.0", "model.drop_rate"),
    ("train.lr=0", "train.lr"),
    ("train.lr=-0.1", "train.lr"),
    ("train.weight_decay=-1", "train.weight_decay"),
    ("train.epochs=0", "train.epochs"),
    ("train.batch_size=-3", "train.batch_size"),
    ("train.optimizer=adam", "optimizer"),
    ("train.schedule=linear", "schedule"),
    ("train.budget=free", "budget"),
    ("data.val_fraction=1.5", "data.val_fraction"),
    ("data.input_size=4", "data.input_size"),
    ("measure.latency_batch_sizes=[]", "measure.latency_batch_sizes"),
    ("measure.latency_batch_sizes=[.nan]", "measure.latency_batch_sizes"),
    ("measure.threads=0", "measure.threads"),
    ("train.lr=fast", "train.lr"),
    ("train.no_such_key=1", "config key"),
]


def _error_line(argv: list[str], capsys) -> str:
    code = main(argv)
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert code == 2, captured
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    return lines[0]


@pytest.mark.parametrize("assignment, names", BAD_SETS, ids=[a for a, _ in BAD_SETS])
def test_a_bad_config_value_is_one_line_and_exit_2(assignment, names, capsys):
    line = _error_line([*BASE, "--set", assignment], capsys)
    assert names in line


@pytest.mark.parametrize(
    "content, says",
    [
        (b"\x00\x01\x02\xff\xfe binary", "not UTF-8"),
        ("train:\n  lr: 0.1\n".encode("utf-16"), "not UTF-8"),
        (b"\xe9t\xe9: 1\n", "not UTF-8"),
        (b"train: [unclosed\n", "not valid YAML"),
        (b"- a list\n- not a mapping\n", "expected a mapping"),
        (b"train:\n  lr: .nan\n", "must be a finite number"),
        (b"seed: 99999999999\n", "'seed'"),
    ],
    ids=["binary", "utf16", "latin1", "broken-yaml", "list", "nan-lr", "big-seed"],
)
def test_a_bad_config_file_is_one_line_and_exit_2(tmp_path, capsys, content, says):
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    line = _error_line([*BASE, "--config", str(path)], capsys)
    assert says in line


@pytest.mark.parametrize("seed", ["4294967296", "-5", "99999999999999999999999"])
def test_a_seed_outside_numpys_range_on_the_command_line(seed, capsys):
    assert "'seed'" in _error_line([*BASE, "--seed", seed], capsys)


@pytest.mark.parametrize(
    "executor, says",
    [
        ({"cell_timeout": -1}, "cell_timeout"),
        ({"cell_timeout": float("nan")}, "cell_timeout"),
        ({"cell_timeout": float("inf")}, "cell_timeout"),
        ({"cell_timeout": "soon"}, "cell_timeout"),
        ({"cell_timeout": True}, "cell_timeout"),
        ({"workers": 0}, "workers"),
        ({"backend": "slurm"}, "backend"),
    ],
    ids=["negative", "nan", "inf", "text", "bool", "no-workers", "backend"],
)
def test_a_bad_executor_setting_is_one_line(executor, says):
    params = {
        "profiles": {
            "p": {"datasets": ["digits"], "archs": ["test_resnet"], "seeds": [0], "epochs": 1, "executor": executor}
        }
    }
    with pytest.raises(UserError, match=says) as info:
        get_profile(params, "p")
    assert "\n" not in str(info.value)


# -- params.yaml: our bounded loader reads it before DVC does ---------------------------------------------

PROFILE = "profiles:\n  p: {datasets: [digits], archs: [test_resnet], seeds: [0], epochs: 1}\n"


def _alias_bomb(levels: int = 9) -> str:
    """The billion laughs: each anchor is a list of nine aliases of the previous one (9**9 nodes)."""
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels + 1)]
    return PROFILE + "\n".join(lines) + "\n"


BAD_PARAMS = {
    "alias-bomb": (_alias_bomb(), "YAML aliases to more than"),
    "recursive-alias": (PROFILE + "loop: &loop [*loop]\n", "YAML aliases to more than"),
    "oversized": (PROFILE + "# padding\n" * 150_000, "MiB; refusing to read more than 1 MiB"),
    "not-utf8": (b"\xff\xfe\x00profiles", "not UTF-8"),
}


@pytest.mark.parametrize("case", list(BAD_PARAMS), ids=list(BAD_PARAMS))
def test_a_hostile_params_yaml_is_refused_in_one_line_within_seconds(tmp_path, case):
    import time

    from benchmark.study.profiles import load_params

    content, says = BAD_PARAMS[case]
    path = tmp_path / "params.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    start = time.perf_counter()
    with pytest.raises(UserError, match=says) as info:
        load_params(path)
    assert time.perf_counter() - start < 5
    assert "\n" not in str(info.value) and "params.yaml" in str(info.value)


def test_the_bounded_loader_reads_the_real_params_yaml_and_a_few_aliases(tmp_path):
    import yaml

    from benchmark.core.params import read_params
    from tests.conftest import ROOT

    assert read_params(ROOT / "params.yaml") == yaml.safe_load((ROOT / "params.yaml").read_text())
    path = tmp_path / "params.yaml"
    path.write_text(PROFILE + "base: &b {lr: 0.1}\nother: *b\n")  # a few aliases are fine
    assert read_params(path)["other"] == {"lr": 0.1}


@pytest.mark.parametrize("case", ["alias-bomb", "oversized"])
def test_make_study_refuses_a_hostile_params_yaml_before_dvc(tmp_path, case):
    """`make study` runs `python -m pipelines.params` before `dvc repro`: one line, exit 2, in seconds."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    path = tmp_path / "params.yaml"
    path.write_text(BAD_PARAMS[case][0])
    proc = subprocess.run(
        [sys.executable, "-m", "pipelines.params", str(path)], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: study file"), proc.stderr
    assert BAD_PARAMS[case][1] in lines[0]


def test_make_study_checks_params_yaml_before_dvc_repro():
    import subprocess

    from tests.conftest import ROOT

    dry = subprocess.run(["make", "-n", "study"], capture_output=True, text=True, cwd=ROOT, timeout=60).stdout
    assert "-m pipelines.params" in dry and dry.index("-m pipelines.params") < dry.index("dvc repro"), dry


# -- the machine: memory, the MLflow store, read-only folders ---------------------------------------------


def test_an_input_size_beyond_the_machines_memory_is_one_line(tmp_path, capsys):
    out = tmp_path / "out"
    line = _error_line(
        ["run", "--arch", "test_resnet", "--out", str(out), "--no-track", "--set", "data.input_size=100000"], capsys
    )
    assert "data.input_size=100000" in line and "GiB of memory" in line
    assert not out.exists()


def test_a_failed_allocation_inside_a_cell_names_the_sizes_and_the_memory():
    import torch

    from benchmark.cell.memory import too_big
    from benchmark.core.config import RunConfig

    cfg = RunConfig()
    cfg.data.input_size = 3000
    with pytest.raises(RuntimeError) as info:
        torch.empty(2**50, dtype=torch.uint8)  # a petabyte: torch's allocator refuses it at once
    error = too_big(info.value, cfg)
    assert isinstance(error, UserError) and "data.input_size=3000" in str(error) and "GiB of memory" in str(error)
    assert too_big(RuntimeError("mat1 and mat2 shapes cannot be multiplied"), cfg) is None  # other errors stay


def test_a_non_sqlite_mlflow_db_is_one_line_naming_the_file(tmp_path, monkeypatch, capsys):
    db = tmp_path / "mlflow.db"
    db.write_text("not a database\n")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    out = tmp_path / "out"
    line = _error_line(["run", "--arch", "test_resnet", "--out", str(out), "--set", "data.input_size=8"], capsys)
    assert str(db) in line and "not a SQLite database" in line
    assert db.read_text() == "not a database\n" and not out.exists()


def test_a_read_only_results_folder_is_one_line_for_run_and_for_the_study(tmp_path):
    """A real read-only bind mount (in a user namespace, as root could write through a chmod)."""
    import shutil
    import subprocess
    import sys

    from tests.conftest import ROOT

    if shutil.which("unshare") is None or subprocess.run(["unshare", "-rm", "true"]).returncode != 0:
        pytest.skip("no user namespaces here for a read-only mount")
    ro = tmp_path / "ro"
    ro.mkdir()
    code = f"""
import os, sys
os.environ.update(BENCHMARK_RESULTS="{ro}/results", MLFLOW_TRACKING_URI="sqlite:///{tmp_path}/mlflow.db")
from benchmark.cli import main
print("rc=%d" % main(["run", "--no-track", "--arch", "test_resnet", "--out", "{ro}/out"]), flush=True)
from pipelines._main import stage_main
from pipelines.cells import main as cells
try:
    stage_main(cells)
except SystemExit as exc:
    print("rc=%s" % exc.code)
"""
    script = (
        f"mount --bind {ro} {ro} && mount -o remount,bind,ro {ro} {ro} || exit 99; exec {sys.executable} -c '{code}'"
    )
    # one interpreter for both (`run --out` and the study's stage `cells`): torch is imported once
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.stdout.split() == ["rc=2", "rc=2"], proc
    lines = proc.stderr.strip().splitlines()
    assert lines == [
        f"error: output folder '{ro}/out' is not writable (Read-only file system)",
        f"error: output folder '{ro}/results' is not writable (Read-only file system)",
    ]
    assert list(ro.iterdir()) == []
