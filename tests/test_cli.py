"""The command line as a user runs it, with a real MLflow store."""

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT, TINY_ARGS, mlflow_runs, run_cli, run_cli_here

REQUIRED = {
    "method",
    "arch",
    "dataset",
    "seed",
    "epochs",
    "status",
    "top1",
    "top5",
    "params",
    "params_nonzero",
    "macs",
    "latency_ms_b1",
    "latency_ms_b64",
    "train_seconds",
    "config",
    "config_hash",
    "versions",
    "git_commit",
}


def test_run_writes_metrics_and_one_mlflow_run(tmp_path, mlflow_uri):
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
        "--epochs",
        "2",
        *TINY_ARGS[2:],
        "--set",
        "measure.latency_batch_sizes=[1, 64]",
        "--save-model",
    )
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert REQUIRED <= set(metrics)
    assert metrics["status"] == "finished" and metrics["epochs"] == 2
    assert 10.0 < metrics["top1"] <= metrics["top5"] <= 100.0
    assert metrics["params"] == metrics["params_nonzero"] > 11_000_000
    assert metrics["config"]["train"]["epochs"] == 2 and metrics["config"]["data"]["input_size"] == 8
    assert metrics["config"]["model"]["small_input"] is True  # resolved, not left as "auto"
    assert set(metrics["versions"]) >= {"python", "torch", "timm", "suite"}
    assert json.loads((out / "config.json").read_text()) == metrics["config"]

    (run,) = mlflow_runs(mlflow_uri)
    assert run.info.status == "FINISHED" and run.info.run_id == metrics["mlflow_run_id"]
    assert run.data.tags["method"] == "dense" and run.data.tags["config_hash"] == metrics["config_hash"]
    assert run.data.params["train.epochs"] == "2" and run.data.params["model.arch"] == "resnet18"
    assert run.data.metrics["final/top1"] == pytest.approx(metrics["top1"])
    # where the result and the run are: the folder and the run's page in the MLflow UI
    assert f"result: {out}\n" in proc.stderr
    page = f"http://127.0.0.1:5000/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
    assert f"MLflow run: {page}\n" in proc.stderr

    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_uri)
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val/top1")] == [1, 2]
    assert len(client.get_metric_history(run.info.run_id, "train/loss")) == 2
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"metrics.json", "config.json", "model"} <= artifacts
    # --save-model: the network as an MLflow model with its signature, loadable and computing the same logits
    import mlflow.pytorch
    import torch
    from mlflow.models import get_model_info

    info = get_model_info(f"runs:/{run.info.run_id}/model")
    assert info.flavors.keys() >= {"pytorch", "python_function"}
    assert list(info.signature.inputs.to_dict()[0]["tensor-spec"]["shape"]) == [-1, 1, 8, 8]
    loaded = mlflow.pytorch.load_model(f"runs:/{run.info.run_id}/model").eval()
    assert loaded(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


def test_yaml_config_then_set_overrides(tmp_path, mlflow_uri):
    cfg_file = tmp_path / "exp.yaml"
    cfg_file.write_text("train:\n  lr: 0.01\n  batch_size: 32\n")
    out = tmp_path / "cell"
    proc = run_cli(
        "run", "--out", str(out), "--config", str(cfg_file), "--set", "train.lr=0.02", *TINY_ARGS, "--no-track"
    )
    assert proc.returncode == 0, proc.stderr
    config = json.loads((out / "metrics.json").read_text())["config"]
    assert config["train"]["lr"] == 0.02 and config["train"]["batch_size"] == 32
    assert mlflow_runs(mlflow_uri) == []  # --no-track logs nothing

    # `config` resolves the same cell without running it: same config, same hash
    shown = run_cli("config", "--config", str(cfg_file), "--set", "train.lr=0.02", *TINY_ARGS[:-1])
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == {
        "config": config,
        "config_hash": json.loads((out / "metrics.json").read_text())["config_hash"],
    }


def _not_a_dir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    return str(blocker / "out")


BAD_INPUTS = {
    "unknown method": (["--method", "magic"], "unknown method 'magic'"),
    "unknown arch": (["--arch", "resnet181"], "unknown arch 'resnet181'; did you mean: resnet18"),
    "unknown dataset": (["--dataset", "mnst"], "unknown dataset 'mnst'; did you mean: mnist"),
    "zero epochs": (["--epochs", "0"], "'train.epochs': must be > 0, got 0"),
    "negative batch": (["--batch-size", "-4"], "'train.batch_size': must be > 0, got -4"),
    "malformed set": (["--set", "train.lr"], "malformed --set 'train.lr'"),
    "unknown key": (
        ["--set", "train.momentom=0.5"],
        "unknown config key 'train.momentom'; did you mean: train.momentum",
    ),
    "bad type": (["--set", "train.epochs=many"], "bad value for 'train.epochs': expected int, got 'many'"),
    "missing files": (["--dataset", "mnist", "--data-root", "{empty}"], "dataset 'mnist' not found under"),
    "small arch input": (["--arch", "convnext_atto"], "cannot take 8x8 inputs"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(case, tmp_path, mlflow_uri):
    extra, message = BAD_INPUTS[case]
    (tmp_path / "empty").mkdir()
    extra = [a.replace("{empty}", str(tmp_path / "empty")) for a in extra]
    out = tmp_path / "cell"
    proc = run_cli_here("run", "--out", str(out), *TINY_ARGS, *extra)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert message in lines[0]
    assert not (out / "metrics.json").exists()
    assert mlflow_runs(mlflow_uri) == []


def test_unwritable_output_folder(tmp_path, mlflow_uri):
    proc = run_cli_here("run", "--out", _not_a_dir(tmp_path), *TINY_ARGS)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: output folder") and "not writable" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert mlflow_runs(mlflow_uri) == []


def test_argparse_errors_are_one_line_exit_2():
    proc = run_cli("run", "--epochs", "three", "--out", "x")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "invalid int value: 'three'" in proc.stderr


def test_list_piped_into_a_reader_that_stops_early_prints_no_traceback():
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmark", "list", "methods"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    proc.stdout.close()  # the reader is gone before the first line is written (like `| head` finishing)
    stderr = proc.stderr.read()
    assert proc.wait(timeout=120) == 1
    assert stderr == ""


def test_list_commands():
    methods = run_cli_here("list", "methods")
    header, first = methods.stdout.splitlines()[:2]
    assert methods.returncode == 0 and header.split() == [
        "METHOD",
        "GRANULARITY",
        "SCHEDULE",
        "RATE",
        "TAGS",
        "CITATION",
    ]
    assert first.split()[0] == "dense"
    datasets = run_cli_here("list", "datasets").stdout
    assert datasets.splitlines()[0].split() == ["DATASET", "DESCRIPTION"]
    for name in ("digits", "mnist", "fashion_mnist", "kmnist", "cifar10", "cifar100", "flowers102", "imagefolder"):
        assert f"\n{name} " in "\n" + datasets
    archs = run_cli_here("list", "archs", "resnet1*").stdout.split()
    assert "resnet18" in archs and all(a.startswith("resnet1") for a in archs)
    bad = run_cli_here("list", "models")
    assert bad.returncode == 2 and "unknown list kind 'models'" in bad.stderr and "methods" in bad.stderr


def test_one_entry_point_with_subcommands_and_help():
    from benchmark.cli import _tools

    top = run_cli_here("--help")
    assert top.returncode == 0
    for name in ("run", "list", "config", *_tools()):
        assert f"    {name}" in top.stdout, name
    for name in ("run", "list", "config"):
        assert run_cli_here(name, "--help").returncode == 0
    compare = run_cli_here("compare", "--help")  # a tool's own options, through the one entry point
    assert compare.returncode == 0 and "--sparsity" in compare.stdout
    bad = run_cli_here("compare", "--sparsity", "2")
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and len(bad.stderr.splitlines()) == 1


def test_a_failed_run_leaves_no_output_folder(tmp_path, mlflow_uri, monkeypatch):
    from tests.conftest import crashing_method

    name = crashing_method(tmp_path / "plugins")
    monkeypatch.setenv("PRUNING_BENCH_PLUGINS", str(tmp_path / "plugins"))
    out = tmp_path / "new" / "cell"
    proc = run_cli("run", "--method", name, "--arch", "test_resnet", "--out", str(out), *TINY_ARGS)
    assert proc.returncode != 0 and "pruning step diverged" in proc.stderr
    assert not out.exists()
    (run,) = mlflow_runs(mlflow_uri)  # the failure is on record in MLflow, not on disk
    assert run.info.status == "FAILED"
