"""Errors a user can fix. The command line prints them as one line and exits with code 2."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """Bad input: a wrong name, a bad value, a missing file. The message is one line."""


def unknown_choice(kind: str, value: object, choices: Iterable[str], show: int = 12) -> UserError:
    """An error naming the bad value, the closest valid names and (some of) the valid choices."""
    choices = sorted(set(choices))
    close = difflib.get_close_matches(str(value), choices, n=5, cutoff=0.5)
    msg = f"unknown {kind} {value!r}"
    if close:
        msg += f"; did you mean: {', '.join(close)}"
    if len(choices) <= show:
        msg += f"; valid choices: {', '.join(choices)}"
    else:
        msg += f"; {len(choices)} valid choices, list them with `python -m benchmark list {kind}s`"
    return UserError(msg)


class CellFailed(Exception):
    """A cell that ran and failed for a reason its message states in full (e.g. "diverged at epoch 3: ...").
    Recorded as a failed cell, never as a result; the command line prints it as one line."""
