"""The foundation's quality target, checked on the real default command."""

import json

import pytest

from tests.conftest import run_cli


@pytest.mark.slow
@pytest.mark.alone
def test_default_dense_resnet18_on_digits_reaches_97_percent_within_two_minutes(tmp_path):
    out = tmp_path / "cell"
    proc = run_cli(
        "run",
        "--method",
        "dense",
        "--arch",
        "resnet18",
        "--dataset",
        "digits",
        "--seed",
        "0",
        "--out",
        str(out),
        "--no-track",
        "--quiet",
    )
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["top1"] >= 97.0
    assert metrics["train_seconds"] <= 120.0
