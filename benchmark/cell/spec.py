"""What a pruning method is to the harness: its result, and its spec with declared capabilities.

The study and the report read capabilities from here instead of probing methods or listing names:
- `takes_sparsity`: prunes to a target parameter pruning rate (`method_args.sparsity`), so it gets
  one cell per operating point; otherwise one cell at its own rate (dense, EDropout);
- `granularity`: none | structured (channels removed) | unstructured (weights zeroed, shape kept);
- `schedule`: when it prunes (none | at_init | after_training | during_training | iterative);
- `needs_batchnorm`: refuses architectures without BatchNorm layers (e.g. Network Slimming);
- `tags`: what a method is for the report (`reference`: the unpruned network every cell is
  compared with; `random`, `magnitude`: the baselines Blalock et al. 2020 ask for; `control`: a
  control that separates a method from chance);
- `control_of`: the method this one is a control of (it inherits that method's profile settings);
- `from_twin`: metrics of the EDropout cell of the same dataset, arch, seed and settings that the
  method needs before it starts (e.g. `kept_per_group` for the `scratch` and `shuffled` controls);
  the harness copies them into `method_args`, with `twin_from` naming the result they came from.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch.nn as nn

from benchmark.core.errors import UserError

if TYPE_CHECKING:
    from benchmark.cell.context import CellContext

GRANULARITIES = ("none", "structured", "unstructured")
SCHEDULES = ("none", "at_init", "after_training", "during_training", "iterative")
TAGS = ("reference", "random", "magnitude", "control")
TWIN_FROM = "twin_from"  # method_args key: the EDropout result a `from_twin` method's values were read from


@dataclass
class MethodResult:
    """What a method hands back: the final network and any metrics of its own."""

    model: nn.Module
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MethodSpec:
    """A registered method: its function, its citation, where it lives, and what it can do."""

    name: str
    fn: Callable[[CellContext], MethodResult]
    citation: str
    granularity: str
    schedule: str
    source: str  # the file that registered it (part of its cells' code fingerprint)
    check_args: Callable[[dict], Any] | None = None  # raises UserError on bad method_args
    takes_sparsity: bool = False
    needs_batchnorm: bool = False
    tags: frozenset[str] = frozenset()
    control_of: str | None = None  # the method this one is a control of (its file is in the fingerprint too)
    from_twin: tuple[str, ...] = ()  # metrics of the EDropout cell with the same settings, copied into method_args

    def validate_args(self, method_args: dict) -> None:
        if self.check_args is not None:
            self.check_args(method_args)
        elif method_args:
            raise UserError(f"method {self.name!r} takes no method_args, got {', '.join(sorted(method_args))}")

    @property
    def is_reference(self) -> bool:
        return "reference" in self.tags


def check_capabilities(
    name: str,
    citation: Any,
    granularity: Any,
    schedule: Any,
    takes_sparsity: Any,
    needs_batchnorm: Any,
    tags: Any,
    check_args: Any,
) -> frozenset[str]:
    """Reject a malformed declaration with one line naming the bad value; returns the tags as a set."""
    if not isinstance(name, str) or not name.strip() or any(c.isspace() for c in name):
        raise UserError(f"method name {name!r}: must be a non-empty string without spaces")
    if not isinstance(citation, str) or not citation.strip():
        raise UserError(f"method {name!r}: citation must be a non-empty string, got {citation!r}")
    if granularity not in GRANULARITIES:
        raise UserError(f"method {name!r}: granularity {granularity!r} is not one of {', '.join(GRANULARITIES)}")
    if schedule not in SCHEDULES:
        raise UserError(f"method {name!r}: schedule {schedule!r} is not one of {', '.join(SCHEDULES)}")
    for flag, value in (("takes_sparsity", takes_sparsity), ("needs_batchnorm", needs_batchnorm)):
        if not isinstance(value, bool):
            raise UserError(f"method {name!r}: {flag} must be true or false, got {value!r}")
    if isinstance(tags, str) or not all(isinstance(t, str) for t in tags):
        raise UserError(f"method {name!r}: tags must be a list of names, got {tags!r}")
    tags = tuple(tags)
    unknown = sorted(set(tags) - set(TAGS))
    if unknown:
        raise UserError(f"method {name!r}: tag {unknown[0]!r} is not one of {', '.join(TAGS)}")
    if check_args is not None and not callable(check_args):
        raise UserError(f"method {name!r}: check_args must be callable or None, got {type(check_args).__name__}")
    if takes_sparsity and check_args is None:
        raise UserError(f"method {name!r}: takes_sparsity needs check_args that accepts method_args.sparsity")
    return frozenset(tags)
