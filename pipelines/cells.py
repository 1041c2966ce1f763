"""Stage `cells`: every pruning method x dataset x arch x seed x operating point of the active profile.

Results land in results/cells/<dataset>/<arch>/seed<k>/<method>/<point>-<config hash>/. Finished cells with the
same config and code are skipped; a failing cell leaves failed.json and a FAILED MLflow run and the
stage goes on (the report lists it; `dvc repro --force cells` retries the failed ones).
"""

from __future__ import annotations

from benchmark.core.paths import prepared_root, results_root
from benchmark.study.cells import method_cells
from benchmark.study.profiles import get_profile, load_params
from benchmark.study.scheduler import run_study
from pipelines._main import stage_main


def main(argv: list[str]) -> None:
    profile = get_profile(load_params())
    run_study(
        "cells",
        method_cells(profile, results_root()),
        profile.executor,
        study_name=profile.name,
        prepared=prepared_root(),
        save_model=True,  # model.pt, which the latency stage times
    )


if __name__ == "__main__":
    stage_main(main)
