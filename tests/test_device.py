"""train.device / train.precision / train.channels_last, on the CPU this suite runs on.

No GPU here: these tests check device resolution and refusal, that `auto` on a CPU is the CPU with
unchanged config hashes and identical numbers, that bf16 autocast and channels_last really act
on the CPU, and that the device is recorded in metrics.json and MLflow."""

from __future__ import annotations

import copy

import pytest
import torch

from benchmark.cell import device as dev
from benchmark.cell.runner import TrackingSettings, identify, run_cell
from benchmark.core.config import RunConfig, config_hash, non_default_fields
from benchmark.core.errors import UserError
from tests.conftest import TINY_ARGS, mlflow_runs, run_cli_here

NO_CUDA = not torch.cuda.is_available()


def test_device_resolution():
    assert dev.resolve_device("cpu") == torch.device("cpu")
    assert dev.resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(UserError) as info:
        dev.resolve_device("gpu")
    assert str(info.value) == "bad value for 'train.device': 'gpu'; valid choices: auto, cpu, cuda, cuda:N"


@pytest.mark.skipif(not NO_CUDA, reason="checks the refusal on a machine without CUDA")
@pytest.mark.parametrize("name", ["cuda", "cuda:1"])
def test_cuda_without_a_gpu_is_refused_in_one_line(name, tmp_path):
    with pytest.raises(UserError, match="torch sees no CUDA device"):
        dev.resolve_device(name)
    out = tmp_path / "cell"
    done = run_cli_here("run", *TINY_ARGS, "--set", f"train.device={name}", "--no-track", "--out", str(out))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and f"'train.device': '{name}'" in lines[0] and "use 'auto' or 'cpu'" in lines[0]
    assert not out.exists() or not any(out.iterdir())  # nothing written


def test_bad_precision_names_the_choices(tmp_path):
    done = run_cli_here("run", *TINY_ARGS, "--set", "train.precision=fp8", "--no-track", "--out", str(tmp_path / "c"))
    assert done.returncode == 2 and "unknown precision 'fp8'" in done.stderr and "bf16, fp16, fp32" in done.stderr


@pytest.mark.skipif(not NO_CUDA, reason="auto means the CPU only without CUDA")
def test_auto_on_a_cpu_is_the_cpu_with_the_same_hash_and_numbers(tiny_cfg, tmp_path, mlflow_uri):
    auto = copy.deepcopy(tiny_cfg)
    cpu = copy.deepcopy(tiny_cfg)
    cpu.train.device = "cpu"
    assert identify(auto).config.train.device == "auto"
    resolved = identify(auto).config  # CPU results keep their identity: the new fields add nothing to the hash
    assert not {"train.device", "train.precision", "train.channels_last"} & set(non_default_fields(resolved))
    a = run_cell(auto, tmp_path / "auto", TrackingSettings(uri=mlflow_uri), progress=False)
    b = run_cell(cpu, tmp_path / "cpu", TrackingSettings(enabled=False), progress=False)
    for key in ("top1", "top5", "test_loss", "val_top1", "macs", "params", "param_pruning_rate"):
        if key in a:
            assert a[key] == b[key], key
    assert a["device"] == "cpu" and a["precision"] == "fp32" and a["channels_last"] is False and a["device_name"]
    assert not any(k.startswith("gpu_latency") for k in a)  # GPU latency only on a GPU
    (run,) = mlflow_runs(mlflow_uri)
    assert run.data.tags["device"] == "cpu" and run.data.tags["precision"] == "fp32"


def test_bf16_autocast_acts_on_the_cpu():
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(3))
    x = torch.randn(2, 1, 8, 8)
    model(x)
    with dev.autocast(torch.device("cpu"), "bf16"):
        assert model(x).dtype == torch.bfloat16
    with dev.autocast(torch.device("cpu"), "fp32"):
        assert model(x).dtype == torch.float32
    assert dev.grad_scaler(torch.device("cpu"), "fp16") is None  # a scaler only on CUDA


def test_channels_last_and_bf16_cell_on_the_cpu(tiny_cfg, tmp_path):
    cfg: RunConfig = copy.deepcopy(tiny_cfg)
    cfg.train.precision, cfg.train.channels_last = "bf16", True
    cfg.model.arch = "test_resnet"
    seen = []
    from benchmark.cell import training

    original = training.to_device

    def spy(x, device, channels_last=False):
        out = original(x, device, channels_last)
        if out.dim() == 4:
            seen.append(out.is_contiguous(memory_format=torch.channels_last))
        return out

    import pytest as _pytest

    with _pytest.MonkeyPatch.context() as mp:
        mp.setattr(training, "to_device", spy)
        metrics = run_cell(cfg, tmp_path / "cell", TrackingSettings(enabled=False), progress=False)
    assert seen and all(seen)  # every training batch went in NHWC
    assert metrics["status"] == "finished" and metrics["precision"] == "bf16" and metrics["channels_last"] is True
    assert 0.0 <= metrics["top1"] <= 100.0 and metrics["macs"] > 0
    assert identify(cfg).config_hash != config_hash(tiny_cfg)  # a different cell
