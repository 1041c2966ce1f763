"""Collect a study's cells into one table: one row per expected cell, every scalar metric.

A cell is `finished` (metrics.json), `failed` (failed.json, with its error) or `missing`
(neither: not run yet, or killed in flight). Nested values (the config, EDropout's search curve)
stay in each cell's metrics.json; `result_dir` points there.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from benchmark.study import PROJECT_ROOT, Cell, Profile, dense_cells, method_cells

ID_COLUMNS = ["cell", "method", "arch", "dataset", "seed", "operating_point", "granularity", "schedule",
              "status", "error", "result_dir"]


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(PROJECT_ROOT))
    except ValueError:
        return str(path)


def cell_row(cell: Cell) -> dict[str, Any]:
    from benchmark.execution import FAILED_FILE
    from benchmark.methods import get_method

    cfg = cell.config
    spec = get_method(cfg.method)
    row: dict[str, Any] = {
        "cell": "/".join([cfg.method, cfg.data.name, cfg.model.arch, f"seed{cfg.seed}"]
                         + ([cell.operating_point] if cell.operating_point not in ("dense", cfg.method) else [])),
        "method": cfg.method, "arch": cfg.model.arch, "dataset": cfg.data.name, "seed": cfg.seed,
        "operating_point": cell.operating_point, "granularity": spec.granularity, "schedule": spec.schedule,
        "status": "missing", "error": "", "result_dir": _relative(cell.out),
    }
    try:
        metrics = json.loads((cell.out / "metrics.json").read_text())
    except (OSError, ValueError):
        metrics = None
    if metrics is not None and metrics.get("status") == "finished":
        row["status"] = "finished"
        row.update({k: v for k, v in metrics.items()
                    if k not in row and isinstance(v, (int, float, str, bool)) or v is None and k not in row})
        sparsity = metrics.get("config", {}).get("method_args", {}).get("sparsity")
        row["target_sparsity"] = sparsity if isinstance(sparsity, (int, float)) else None
        return row
    try:
        failure = json.loads((cell.out / FAILED_FILE).read_text())
        row["status"], row["error"] = "failed", failure.get("error", "unknown error")
    except (OSError, ValueError):
        pass
    return row


def study_rows(profile: Profile, results: Path) -> list[dict[str, Any]]:
    return [cell_row(cell) for cell in dense_cells(profile, results) + method_cells(profile, results)]


def write_results_csv(profile: Profile, results: Path, out: Path) -> dict[str, int]:
    """Write the study's table atomically; returns how many cells are finished, failed, missing."""
    import pandas as pd

    rows = study_rows(profile, results)
    frame = pd.DataFrame(rows)
    columns = ID_COLUMNS + sorted(c for c in frame.columns if c not in ID_COLUMNS)
    frame = frame.reindex(columns=columns)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    os.close(fd)
    try:
        frame.to_csv(tmp, index=False)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return {status: int((frame["status"] == status).sum()) for status in ("finished", "failed", "missing")}
