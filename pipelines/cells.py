"""Stage `cells`: every pruning method x dataset x arch x seed x operating point of the active profile.

Results land in results/cells/<dataset>/<arch>/seed<k>/<method>[/<point>]/. Finished cells with the
same config and code are skipped; a failing cell leaves failed.json and a FAILED MLflow run and the
stage goes on (the report lists it; `dvc repro --force cells` retries the failed ones).
"""

from __future__ import annotations

from benchmark.execution import run_study
from benchmark.study import PROJECT_ROOT, get_profile, load_params, method_cells
from pipelines._main import stage_main


def main(argv: list[str]) -> None:
    profile = get_profile(load_params())
    run_study("cells", method_cells(profile, PROJECT_ROOT / "results"), profile.executor,
              study_name=profile.name, prepared=PROJECT_ROOT / "data" / "prepared")


if __name__ == "__main__":
    stage_main(main)
