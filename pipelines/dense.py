"""Stage `dense`: train the unpruned reference of every (dataset, arch, seed) of the active profile.

Each cell lands in results/dense/<dataset>/<arch>/seed<k>/ and its network in the checkpoint store
(results/checkpoints), where every post-training method of the same (dataset, arch, seed) starts from.
A cell whose config and code are unchanged is skipped, so re-running the stage costs seconds.
"""

from __future__ import annotations

from benchmark.core.paths import prepared_root, results_root
from benchmark.study.cells import dense_cells
from benchmark.study.profiles import get_profile, load_params
from benchmark.study.scheduler import run_study
from pipelines._main import stage_main


def main(argv: list[str]) -> None:
    profile = get_profile(load_params())
    run_study(
        "dense",
        dense_cells(profile, results_root()),
        profile.executor,
        study_name=profile.name,
        prepared=prepared_root(),
        save_model=True,  # model.pt, which the latency stage times
    )


if __name__ == "__main__":
    stage_main(main)
