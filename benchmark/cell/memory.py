"""An allocation the machine cannot make is bad input (the input size, the batch), not a crash."""

from __future__ import annotations

import os

from benchmark.core.config import RunConfig
from benchmark.core.errors import UserError

# What torch's allocators say when a tensor does not fit (CPU: DefaultCPUAllocator; CUDA: OutOfMemoryError).
_ALLOCATION_FAILED = ("can't allocate memory", "not enough memory", "out of memory", "cannot allocate memory")


def machine_memory_gib() -> float:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30


def too_big(exc: BaseException, cfg: RunConfig) -> UserError | None:
    """A one-line UserError naming the sizes and the machine's memory when `exc` is a failed allocation."""
    if not isinstance(exc, (MemoryError, RuntimeError)):
        return None
    text = str(exc).lower()
    if not isinstance(exc, MemoryError) and not any(words in text for words in _ALLOCATION_FAILED):
        return None
    where = "the GPU's memory" if "cuda" in text else f"this machine's {machine_memory_gib():.0f} GiB of memory"
    return UserError(
        f"data.input_size={cfg.data.input_size} with train.batch_size={cfg.train.batch_size} needs more than "
        f"{where}; give a smaller data.input_size or train.batch_size"
    )


def check_fits(cfg: RunConfig) -> None:
    """Refuse, before building anything, a cell whose one batch of one-channel float32 input alone
    exceeds the machine's memory (a lower bound: activations need many times more)."""
    need = cfg.train.batch_size * cfg.data.input_size**2 * 4 / 2**30
    if need > machine_memory_gib():
        raise UserError(
            f"data.input_size={cfg.data.input_size} with train.batch_size={cfg.train.batch_size} needs at least "
            f"{need:,.0f} GiB for one input batch; this machine has {machine_memory_gib():.0f} GiB of memory"
        )
