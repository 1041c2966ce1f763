"""Collect a study's cells into one table: one row per expected cell, every scalar metric.

A cell is `finished` (metrics.json), `failed` (failed.json, with its error) or `missing`
(neither: not run yet, or killed in flight). Nested values (the config, EDropout's search curve)
stay in each cell's metrics.json; `result_dir` points there.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from benchmark.cell.plugins import get_method
from benchmark.core.integrity import result_problem
from benchmark.core.io import read_json
from benchmark.core.paths import FAILED_FILE, METRICS_FILE, relative_to_root
from benchmark.study.cells import Cell, dense_cells, method_cells
from benchmark.study.latency import merge_latency
from benchmark.study.profiles import Profile

ID_COLUMNS = [
    "cell",
    "method",
    "arch",
    "dataset",
    "seed",
    "operating_point",
    "edropout_point",
    "granularity",
    "schedule",
    "tags",
    "control_of",
    "status",
    "error",
    "result_dir",
]


def cell_row(cell: Cell) -> dict[str, Any]:
    cfg = cell.config
    spec = get_method(cfg.method)
    row: dict[str, Any] = {
        "cell": "/".join(
            [cfg.method, cfg.data.name, cfg.model.arch, f"seed{cfg.seed}"]
            + ([cell.operating_point] if cell.operating_point not in ("dense", cfg.method) else [])
        ),
        "method": cfg.method,
        "arch": cfg.model.arch,
        "dataset": cfg.data.name,
        "seed": cfg.seed,
        "operating_point": cell.operating_point,
        # the EDropout operating point an EDropout, control or matched cell belongs to ('' for the default)
        "edropout_point": cell.operating_point.split("@", 1)[1] if "@" in cell.operating_point else "",
        "granularity": spec.granularity,
        "schedule": spec.schedule,
        "tags": " ".join(sorted(spec.tags)),
        "control_of": spec.control_of or "",
        "status": "missing",
        "error": "",
        "result_dir": relative_to_root(cell.out),
    }
    metrics = read_json(cell.out / METRICS_FILE)
    problem = result_problem(metrics) if metrics is not None else None
    if problem is not None:  # never averaged: listed as failed, and recomputed by the next study
        row["status"], row["error"] = "failed", f"invalid result in {METRICS_FILE}: {problem}"
        return row
    if metrics is not None and metrics.get("status") == "finished":
        row["status"] = "finished"
        row.update(
            {
                k: v
                for k, v in metrics.items()
                if k not in row and isinstance(v, (int, float, str, bool)) or v is None and k not in row
            }
        )
        sparsity = metrics.get("config", {}).get("method_args", {}).get("sparsity")
        row["target_sparsity"] = sparsity if isinstance(sparsity, (int, float)) else None
        return row
    failure = read_json(cell.out / FAILED_FILE)
    if failure is not None:
        row["status"], row["error"] = "failed", failure.get("error", "unknown error")
    return row


def study_rows(profile: Profile, results: Path) -> list[dict[str, Any]]:
    # latency timed alone by the latency stage replaces the cell's own timings (taken beside training)
    return [
        merge_latency(cell_row(cell), results, cell)
        for cell in dense_cells(profile, results) + method_cells(profile, results)
    ]


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
