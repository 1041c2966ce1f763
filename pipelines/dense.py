"""Stage `dense`: train the unpruned reference of every (dataset, arch, seed) cell of the active profile.

Each cell lands in results/dense/<dataset>/<arch>/seed<k>/ (metrics.json, config.json, model.pt);
a cell whose config and code are unchanged is skipped, so re-running the stage costs seconds.
"""

from __future__ import annotations

from benchmark.execution import run_cells
from benchmark.study import PROJECT_ROOT, dense_cells, get_profile, load_params
from pipelines._main import stage_main


def main(argv: list[str]) -> None:
    profile = get_profile(load_params())
    run_cells("dense", dense_cells(profile, PROJECT_ROOT / "results"), PROJECT_ROOT / "data" / "prepared")


if __name__ == "__main__":
    stage_main(main)
