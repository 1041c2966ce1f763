"""Running many cells: skip the finished ones, check every config first, report progress."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from benchmark.config import RunConfig
from benchmark.errors import UserError
from benchmark.runner import TrackingSettings, identify, is_done, run_cell
from benchmark.tracking import ensure_experiment, default_tracking_uri


def check_split(metrics: dict, prepared: Path) -> None:
    """The split a cell trained on must be the one the `prepare` stage materialised."""
    record_path = prepared / metrics["dataset"] / f"seed{metrics['seed']}.json"
    if not record_path.is_file():
        return
    expected = json.loads(record_path.read_text())["split_hash"]
    if metrics["split_hash"] != expected:
        raise UserError(
            f"split of {metrics['dataset']} seed {metrics['seed']} is {metrics['split_hash']}, "
            f"but {record_path} records {expected}: re-run the prepare stage"
        )


def run_cells(
    stage: str,
    cells: list[tuple[RunConfig, Path]],
    prepared: Path | None = None,
    tracking: TrackingSettings | None = None,
    save_model: bool = True,
) -> list[dict]:
    """Run every cell not already finished with the same config and code; returns all metrics."""
    tracking = tracking or TrackingSettings()
    identities = [identify(cfg) for cfg, _ in cells]  # every config is checked before any cell runs
    todo = [(cell, out) for cell, (_, out) in zip(identities, cells) if not is_done(out, cell)]
    print(f"{stage}: {len(cells)} cells, {len(cells) - len(todo)} already done, {len(todo)} to run", file=sys.stderr)
    if todo and tracking.enabled:
        ensure_experiment(tracking.uri or default_tracking_uri(), tracking.experiment)
    start = time.perf_counter()
    for i, (cell, out) in enumerate(todo, 1):
        cfg = cell.config
        print(f"{stage} [{i}/{len(todo)}] {cfg.method} {cfg.model.arch} {cfg.data.name} seed {cfg.seed}", file=sys.stderr)
        metrics = run_cell(cfg, out, tracking=tracking, save_model=save_model)
        if prepared is not None:
            check_split(metrics, prepared)
        elapsed = time.perf_counter() - start
        eta = elapsed / i * (len(todo) - i)
        print(f"{stage} [{i}/{len(todo)}] top-1 {metrics['top1']:.2f}%  elapsed {elapsed:.0f}s  ETA {eta:.0f}s",
              file=sys.stderr)
    return [json.loads((out / "metrics.json").read_text()) for _, out in cells]
