import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

from benchmark.cell.measure import count_macs, count_params, evaluate, measure_model, serialized_bytes
from benchmark.cell.models import create_model
from benchmark.core.config import MeasureConfig, ModelConfig


def test_param_counts_total_and_nonzero():
    model = nn.Sequential(nn.Conv2d(1, 4, 3, bias=False), nn.Flatten(), nn.Linear(4 * 6 * 6, 10))
    assert count_params(model) == {"params": 36 + 1440 + 10, "params_nonzero": 36 + 1440 + 10}
    with torch.no_grad():
        model[0].weight[:2] = 0  # two of four filters zeroed: 18 weights
    assert count_params(model)["params_nonzero"] == 36 + 1440 + 10 - 18


def test_macs_match_a_hand_count():
    # conv: 8 out channels x 6x6 outputs x (1 in x 3x3 kernel) ; linear: 288 x 10
    model = nn.Sequential(nn.Conv2d(1, 8, 3, bias=False), nn.Flatten(), nn.Linear(8 * 6 * 6, 10, bias=False))
    assert count_macs(model, in_chans=1, input_size=8) == 8 * 36 * 9 + 288 * 10


def test_macs_reflect_the_small_input_stem():
    cifar = create_model(ModelConfig(arch="resnet18"), 10, 3, 32)
    imagenet = create_model(ModelConfig(arch="resnet18", small_input=False), 10, 3, 32)
    # without the 4x stem reduction every block sees 16x more positions
    assert count_macs(cifar, 3, 32) > 10 * count_macs(imagenet, 3, 32)


def test_measure_model_reports_size_latency_and_threads():
    model = create_model(ModelConfig(arch="resnet18"), 10, 1, 8)
    out = measure_model(
        model, 1, 8, MeasureConfig(latency_batch_sizes=[1, 4], latency_warmup=1, latency_repeats=3, threads=1)
    )
    assert out["latency_threads"] == 1
    assert out["latency_ms_b1"] > 0 and out["latency_ms_b4"] > 0
    # float32 weights plus buffers and pickling overhead: about 4 bytes per parameter
    assert 4 * out["params"] <= out["model_bytes"] <= 4.05 * out["params"] + 200_000
    assert out["model_bytes"] == serialized_bytes(model)
    assert model.training  # measurement must not leave the model in eval mode


class _Recorder(nn.Module):
    """Returns fixed logits and remembers whether it was called in eval mode."""

    def __init__(self, logits):
        super().__init__()
        self.logits, self.modes = logits, []

    def forward(self, x):
        self.modes.append(self.training)
        return self.logits[: len(x)]


def test_evaluate_top1_top5_in_eval_mode():
    logits = torch.tensor([[9.0, 1, 2, 3, 4, 5, 0], [0.0, 9, 1, 2, 3, 4, 5], [5.0, 4, 3, 2, 1, 0, 9]])
    labels = torch.tensor([0, 6, 1])  # first: top-1 hit; second: rank 2; third: rank 3
    model = _Recorder(logits)
    result = evaluate(model, DataLoader(TensorDataset(torch.zeros(3, 1), labels), batch_size=3), num_classes=7)
    assert abs(result["top1"] - 100 / 3) < 1e-4
    assert abs(result["top5"] - 100.0) < 1e-4
    assert model.modes == [False] and model.training  # evaluated in eval mode, mode restored
