"""What produced a result: library versions and the git commit."""

from __future__ import annotations

import platform
import subprocess

from benchmark.core.paths import PROJECT_ROOT


def versions() -> dict[str, str]:
    import timm
    import torch
    import torch_pruning

    import benchmark

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "torch_pruning": getattr(torch_pruning, "__version__", "unknown"),
        "suite": benchmark.__version__,
    }


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None
