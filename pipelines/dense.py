"""Stage `dense`: train the unpruned reference of every (dataset, arch, seed) of the active profile.

Each cell lands in results/dense/<dataset>/<arch>/seed<k>/ and its network in the checkpoint store
(results/checkpoints), where every post-training method of the same (dataset, arch, seed) starts from.
A cell whose config and code are unchanged is skipped, so re-running the stage costs seconds.
"""

from __future__ import annotations

from benchmark.execution import run_study
from benchmark.study import PROJECT_ROOT, dense_cells, get_profile, load_params
from pipelines._main import stage_main


def main(argv: list[str]) -> None:
    profile = get_profile(load_params())
    run_study("dense", dense_cells(profile, PROJECT_ROOT / "results"), profile.executor,
              study_name=profile.name, prepared=PROJECT_ROOT / "data" / "prepared")


if __name__ == "__main__":
    stage_main(main)
