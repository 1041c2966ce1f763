"""`make study` runs this first: params.yaml read by our bounded loader before DVC parses it.

DVC hangs with no output on a params.yaml that expands through YAML aliases to millions of nodes;
this refuses such a file (and one over 1 MiB, or one without profiles) with one line and exit code 2.
"""

from __future__ import annotations

from benchmark.core.errors import UserError
from benchmark.core.paths import PROJECT_ROOT
from benchmark.study.profiles import load_params
from pipelines._main import stage_main


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise UserError("usage: python -m pipelines.params [PARAMS_YAML]")
    load_params(argv[0] if argv else PROJECT_ROOT / "params.yaml")


if __name__ == "__main__":
    stage_main(main)
