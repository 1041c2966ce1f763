"""Stage `prepare`: materialise each dataset's split for every seed of the active profile."""

from __future__ import annotations

from benchmark.cell.data import prepare_split
from benchmark.core.paths import prepared_root
from benchmark.study.profiles import get_profile, load_params
from pipelines._main import stage_main


def main(argv: list[str]) -> None:
    profile = get_profile(load_params())
    for dataset in profile.datasets:
        for seed in profile.seeds:
            cfg = profile.config("dense", dataset, profile.archs[0], seed).data
            record = prepare_split(cfg, seed, prepared_root())
            print(f"prepared {dataset} seed {seed}: {record['sizes']} split {record['split_hash']}")


if __name__ == "__main__":
    stage_main(main)
