"""Shared wrapper: a stage's bad input is one line on stderr and exit code 2, like the CLI."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from benchmark.core.errors import UserError

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def stage_main(fn: Callable[[list[str]], None]) -> None:
    try:
        fn(sys.argv[1:])
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
