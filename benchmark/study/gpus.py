"""GPUs for the local process pool: which ones a worker may use, and whose turn it is."""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any


def visible_gpus(count: int | None = None) -> list[str]:
    """The GPUs local workers share, as CUDA_VISIBLE_DEVICES entries: those already visible to this
    process (its own CUDA_VISIBLE_DEVICES, else 0..count-1; `count` defaults to torch's device count)."""
    if count is None:
        import torch

        count = torch.cuda.device_count()  # through NVML: CUDA is not initialised in the study process
    listed = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    ids = listed if "CUDA_VISIBLE_DEVICES" in os.environ else [str(i) for i in range(count)]
    return ids[:count]


def pick_gpu(gpus: list[str], busy: list[str]) -> str | None:
    """The GPU for the next local worker: the one the fewest running workers use (the first on a tie),
    so cells go round-robin over the GPUs; None with fewer than two GPUs (nothing to spread)."""
    if len(gpus) < 2:
        return None
    return min(gpus, key=lambda gpu: (busy.count(gpu), gpus.index(gpu)))


def assign_gpu(job: Any, gpus: list[str], running: list[Any]) -> Any:
    """`job` (a backends.Job) with CUDA_VISIBLE_DEVICES set to the GPU whose turn it is among `gpus`,
    given the jobs `running` now; a cell pinned to 'cuda:N' or the CPU is left alone."""
    if job.cell.config.train.device not in ("auto", "cuda"):
        return job
    busy = [r.env["CUDA_VISIBLE_DEVICES"] for r in running if r.env.get("CUDA_VISIBLE_DEVICES") is not None]
    gpu = pick_gpu(gpus, busy)
    return job if gpu is None else replace(job, env={**job.env, "CUDA_VISIBLE_DEVICES": gpu})
