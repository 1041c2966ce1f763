import pytest
import torch

from benchmark.cell.data import build_dataset
from benchmark.cell.models import create_model
from benchmark.cell.training import Hooks, make_optimizer, make_scheduler, seed_everything, train
from benchmark.core.config import DataConfig, ModelConfig, TrainConfig


@pytest.fixture(scope="module")
def digits8():
    return build_dataset(DataConfig(input_size=8), seed=0)


def _train(bundle, seed, cfg=None, hooks=()):
    seed_everything(seed)
    model = create_model(ModelConfig(arch="resnet18"), 10, 1, 8)
    cfg = cfg or TrainConfig(epochs=1, batch_size=128)
    history = train(model, bundle.train, bundle.val, cfg, seed, 10, hooks=hooks, progress=False)
    return model, history


def test_same_seed_same_weights_and_metrics(digits8):
    m1, h1 = _train(digits8, 0)
    m2, h2 = _train(digits8, 0)
    assert [(h.loss, h.val_top1) for h in h1] == [(h.loss, h.val_top1) for h in h2]
    assert all(torch.equal(p, q) for p, q in zip(m1.parameters(), m2.parameters()))
    m3, h3 = _train(digits8, 1)
    assert h3[0].loss != h1[0].loss


def test_training_learns(digits8):
    _, history = _train(digits8, 0, TrainConfig(epochs=3, batch_size=64))
    assert history[-1].loss < history[0].loss
    assert history[-1].val_top1 > 50.0  # chance is 10%


class Counting(Hooks):
    def __init__(self):
        self.events = []

    def before_step(self, model, x, y):
        self.events.append("before")
        assert model.training

    def after_backward(self, model):
        self.events.append("backward")
        assert any(p.grad is not None for p in model.parameters())

    def after_step(self, model):
        self.events.append("step")

    def end_epoch(self, model, epoch):
        self.events.append("epoch")
        return {"hook_metric": float(epoch)}


def test_hooks_run_in_order_once_per_step(digits8):
    hook = Counting()
    _train(digits8, 0, TrainConfig(epochs=1, batch_size=256), hooks=[hook])
    steps = -(-len(digits8.train) // 256)
    assert hook.events == ["before", "backward", "step"] * steps + ["epoch"]


def test_optimisers_and_schedules():
    model = torch.nn.Linear(2, 2)
    sgd = make_optimizer(model, TrainConfig(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=1e-4))
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["momentum"] == 0.9
    ada = make_optimizer(model, TrainConfig(optimizer="adadelta", lr=1.0, rho=0.9, eps=1e-6, weight_decay=1e-5))
    assert isinstance(ada, torch.optim.Adadelta) and ada.defaults["rho"] == 0.9

    step = make_scheduler(ada, TrainConfig(schedule="step", step_size=2, gamma=0.1), epochs=6)
    lrs = []
    for _ in range(5):
        lrs.append(ada.param_groups[0]["lr"])
        ada.step()
        step.step()
    assert lrs == pytest.approx([1.0, 1.0, 0.1, 0.1, 0.01])

    opt = make_optimizer(model, TrainConfig(lr=0.1))
    cosine = make_scheduler(opt, TrainConfig(schedule="cosine"), epochs=4)
    for _ in range(4):
        opt.step()
        cosine.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-9)
    assert make_scheduler(opt, TrainConfig(schedule="none"), epochs=4) is None
