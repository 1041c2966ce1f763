"""Where things live: the project root, the results and checkpoint folders, and the file names of a result.

No other module builds these paths by hand. `BENCHMARK_RESULTS` and `BENCHMARK_CHECKPOINTS` move the
results and the dense checkpoint store (e.g. to a scratch disk).
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]

METRICS_FILE = "metrics.json"  # a finished cell's result, written last and atomically
CONFIG_FILE = "config.json"  # the fully resolved config of a cell
FAILED_FILE = "failed.json"  # a failed cell's error, beside where its result would be
MODEL_FILE = "model.pt"  # with --save-model


def results_root() -> Path:
    return Path(os.environ.get("BENCHMARK_RESULTS", PROJECT_ROOT / "results"))


def checkpoints_root() -> Path:
    return Path(os.environ.get("BENCHMARK_CHECKPOINTS", PROJECT_ROOT / "results" / "checkpoints"))


def prepared_root() -> Path:
    """Each seed's materialised split (the `prepare` stage)."""
    return PROJECT_ROOT / "data" / "prepared"


def reports_root() -> Path:
    return PROJECT_ROOT / "reports"


def relative_to_root(path: Path, root: Path | None = None) -> str:
    """`path` relative to `root` (default: the project root) where it lies inside, else as given."""
    try:
        return str(Path(path).resolve().relative_to((root or PROJECT_ROOT).resolve()))
    except ValueError:
        return str(path)


def cell_folder(
    results: Path, stage: str, dataset: str, arch: str, seed: int, method: str, point: str, config_hash: str
) -> Path:
    """Where a cell's result lives: browsable coordinates, then what was run.

    `<stage>/<dataset>/<arch>/seed<k>/<method>/<point>-<config hash>`, where `point` is `own` (the
    method's own rate: dense, EDropout), `s<rate>` or `matched`. A what-if with other settings has
    another config hash, so it writes beside the earlier result instead of over it.
    """
    return Path(results) / stage / dataset / arch / f"seed{seed}" / method / f"{point}-{config_hash}"
