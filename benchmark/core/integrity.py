"""Is a metrics.json a result this harness could have written? Checked on every read that counts it.

A hand-edited or damaged result (an impossible top-1, a missing key, a number turned into text) is
never skipped as done nor averaged: it is recomputed by the next study and reported as invalid
until then. Ranges come from the metric table (`bounds`); the schema is the keys the runner writes.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from benchmark.core import metrics as M

# Keys every finished result has, with the types they must have.
REQUIRED: dict[str, type | tuple[type, ...]] = {
    "method": str,
    "arch": str,
    "dataset": str,
    "seed": int,
    "status": str,
    "config": dict,
    "config_hash": str,
    "code_hash": str,
    M.TOP1: numbers.Real,
    M.TOP5: numbers.Real,
    M.PARAMS: numbers.Real,
    M.MACS: numbers.Real,
}
# A finished result's test accuracy is a number; NaN only where the runner allows it (no validation set).
MUST_BE_FINITE = (M.TOP1, M.TOP5, M.PARAMS, M.MACS)


def result_problem(metrics: Any) -> str | None:
    """Why `metrics` is not a valid finished result, in a few words; None when it is one."""
    if not isinstance(metrics, dict):
        return "not a JSON object"
    if metrics.get("status") != "finished":
        return f"status is {metrics.get('status')!r}, not 'finished'"
    for key, kind in REQUIRED.items():
        if key not in metrics:
            return f"{key!r} is missing"
        value = metrics[key]
        if isinstance(value, bool) or not isinstance(value, kind):
            return f"{key!r} is {value!r}, not a {getattr(kind, '__name__', 'number')}"
    for key in MUST_BE_FINITE:
        if not math.isfinite(metrics[key]):
            return f"{key!r} is {metrics[key]}"
    for key, value in metrics.items():
        metric = M.TABLE.get(key)
        if metric is None or metric.bounds is None or value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return f"{key!r} is {value!r}, not a number"
        low, high = metric.bounds
        if not math.isnan(value) and not low <= value <= high:
            return f"{key!r} is {value}, outside [{low:g}, {high:g}]"
    if metrics[M.TOP5] + 1e-9 < metrics[M.TOP1]:
        return f"top-5 {metrics[M.TOP5]} is below top-1 {metrics[M.TOP1]}"
    return None
