"""`make study PROFILE=name`: select the study profile in params.yaml (as `dvc exp run -S profile=name` does)."""

from __future__ import annotations

from benchmark.core.errors import UserError
from benchmark.core.paths import PROJECT_ROOT
from benchmark.study.profiles import set_active_profile
from pipelines._main import stage_main


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        raise UserError("usage: python -m pipelines.profile NAME")
    set_active_profile(PROJECT_ROOT / "params.yaml", argv[0])
    print(f"params.yaml: profile set to {argv[0]!r}")


if __name__ == "__main__":
    stage_main(main)
