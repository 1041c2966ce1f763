"""Device plumbing without a GPU: tensors that pruning methods and EDropout create follow the model's
device (checked on torch's `meta` device, where a CPU tensor mixed in fails), random draws stay on
CPU generators (the same numbers on every device), and the local pool spreads cells over GPUs."""

from __future__ import annotations

import torch
import torch.nn as nn

from baselines.taylor import gradient_pass
from baselines.thinet import channel_contributions
from benchmark.cell.data import build_dataset
from benchmark.cell.runner import TrackingSettings
from benchmark.cell.unstructured import apply_masks, shuffle_masks
from benchmark.core.config import DataConfig, RunConfig
from benchmark.study.backends import Job, LocalBackend, _Running
from benchmark.study.cells import Cell
from benchmark.study.gpus import assign_gpu, pick_gpu, visible_gpus
from edropout.masking import Masker
from edropout.units import find_units

META = torch.device("meta")


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)
    )


def test_edropout_masks_are_made_on_the_models_device():
    model = _net()
    units = find_units(model, torch.zeros(1, 1, 8, 8))
    masker = Masker(units).attach()
    states = torch.ones(2, units.num_units, dtype=torch.bool)  # the population's bits stay on the CPU
    masker.set_states(states)
    assert {mask.device.type for mask, _ in masker._masks.values()} == {"cpu"}
    model.to(META)
    masker.set_states(states)
    assert masker._masks and {mask.device for mask, _ in masker._masks.values()} == {META}
    assert model(torch.zeros(4, 1, 8, 8, device=META)).device == META  # the hooks mix no CPU tensor in


def test_unstructured_masks_follow_the_weights_device_and_shuffle_the_same_everywhere():
    model = _net()
    draw = torch.Generator().manual_seed(1)
    masks = {m: torch.rand(m.weight.shape, generator=draw) < 0.5 for m in (model[0], model[5])}
    on_cpu = shuffle_masks(masks, torch.Generator().manual_seed(3))
    on_meta = shuffle_masks({m: mask.to(META) for m, mask in masks.items()}, torch.Generator().manual_seed(3))
    assert all(on_meta[m].device == META for m in masks)
    assert not torch.equal(on_cpu[model[0]], masks[model[0]])  # it did shuffle
    model.to(META)
    apply_masks(on_cpu)  # CPU masks onto meta weights
    assert model[0].weight_mask.device == META and model[0].weight.device == META


def test_thinet_samples_on_the_inputs_device_with_the_cpu_generators_draw():
    conv = nn.Conv2d(3, 5, 3)
    inputs = torch.randn(2, 3, 6, 6)
    cpu = channel_contributions(conv, inputs, 7, torch.Generator().manual_seed(0))
    again = channel_contributions(conv, inputs, 7, torch.Generator().manual_seed(0))
    assert cpu.shape == (3, 7) and torch.equal(cpu, again)
    meta = channel_contributions(conv.to(META), inputs.to(META), 7, torch.Generator().manual_seed(0))
    assert meta.device == META and meta.shape == cpu.shape


def test_taylor_gradient_pass_moves_the_batches_to_the_model():
    bundle = build_dataset(DataConfig(name="digits", input_size=8), seed=0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64 * bundle.in_chans, bundle.num_classes)).to(META)
    gradient_pass(bundle.train, batches=2, batch_size=16, seed=0)(model)  # CPU batches, meta model
    assert model[1].weight.grad is not None and model[1].weight.grad.device == META


# -- the local pool on a machine with several GPUs -----------------------------------------------------


def test_visible_gpus_respect_the_callers_cuda_visible_devices(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert visible_gpus(3) == ["0", "1", "2"] and visible_gpus(0) == []
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5, 7")
    assert visible_gpus(2) == ["5", "7"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # every GPU hidden
    assert visible_gpus(0) == []


def test_pick_gpu_is_round_robin_and_fills_the_least_used():
    gpus = ["0", "1", "2"]
    busy: list[str] = []
    for _ in range(6):
        busy.append(pick_gpu(gpus, busy))
    assert busy == ["0", "1", "2", "0", "1", "2"]
    assert pick_gpu(gpus, ["0", "0", "2"]) == "1"
    assert pick_gpu(["0"], []) is None and pick_gpu([], []) is None  # one GPU or none: nothing to spread


def _job(tmp_path, device: str) -> Job:
    cfg = RunConfig()
    cfg.train.device = device
    return Job(Cell(cfg, tmp_path / device, "dense"), TrackingSettings(enabled=False), False, 1, "")


def _next(backend: LocalBackend, job: Job) -> Job:
    """The job as LocalBackend.submit starts it, given the workers running now."""
    return assign_gpu(job, backend.gpus, [run.job for run in backend.running.values()])


def test_the_local_pool_gives_each_running_worker_its_own_gpu(tmp_path, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    backend = LocalBackend(workers=3, threads=1, gpus=visible_gpus(2))  # a fake 2-GPU machine
    seen = []
    for key in range(3):
        job = _next(backend, _job(tmp_path, "auto"))
        seen.append(job.env["CUDA_VISIBLE_DEVICES"])
        backend.running[key] = _Running(None, None, job, 0.0, 0)  # as submit() records a started worker
    assert seen == ["0", "1", "0"]
    del backend.running[1]  # the worker on GPU 1 finished: the next cell goes there
    assert _next(backend, _job(tmp_path, "cuda")).env["CUDA_VISIBLE_DEVICES"] == "1"
    for pinned in ("cpu", "cuda:1"):  # a cell pinned to a device keeps the caller's view of the GPUs
        assert "CUDA_VISIBLE_DEVICES" not in _next(backend, _job(tmp_path, pinned)).env
    single = LocalBackend(workers=2, threads=1, gpus=visible_gpus(1))
    assert "CUDA_VISIBLE_DEVICES" not in _next(single, _job(tmp_path, "auto")).env
