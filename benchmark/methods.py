"""Pruning methods: a registry filled by the plugin files in `baselines/` and by installed packages.

A method is a function `fn(ctx: CellContext) -> MethodResult` registered with `@register_method`.
Files in `baselines/` are imported on discovery; installed packages publish methods through the
entry-point group `pruning_bench.methods` (each entry point names a module to import).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch.nn as nn

from benchmark.errors import UserError, unknown_choice
from benchmark.registry import Registry

if TYPE_CHECKING:
    from benchmark.runner import CellContext

ENTRY_POINT_GROUP = "pruning_bench.methods"
PLUGIN_DIR = Path(__file__).resolve().parent.parent / "baselines"
GRANULARITIES = ("none", "structured", "unstructured")
SCHEDULES = ("none", "at_init", "after_training", "during_training", "iterative")


@dataclass
class MethodResult:
    """What a method hands back: the final network and any metrics of its own."""

    model: nn.Module
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class MethodSpec:
    name: str
    fn: Callable[["CellContext"], MethodResult]
    citation: str
    granularity: str
    schedule: str
    source: str
    check_args: Callable[[dict], None] | None = None  # raises UserError on bad method_args

    def validate_args(self, method_args: dict) -> None:
        if self.check_args is not None:
            self.check_args(method_args)
        elif method_args:
            raise UserError(f"method {self.name!r} takes no method_args, got {', '.join(sorted(method_args))}")


METHODS: Registry[MethodSpec] = Registry("method")
BROKEN: dict[str, str] = {}  # plugin file or entry point -> one-line problem
_discovered = False


def register_method(name: str, *, citation: str, granularity: str, schedule: str,
                    check_args: Callable[[dict], None] | None = None):
    """Decorator that registers a pruning method under `name`.

    `check_args(method_args)` validates the method's own settings before anything runs.
    """
    if granularity not in GRANULARITIES:
        raise UserError(f"method {name!r}: granularity {granularity!r} is not one of {', '.join(GRANULARITIES)}")
    if schedule not in SCHEDULES:
        raise UserError(f"method {name!r}: schedule {schedule!r} is not one of {', '.join(SCHEDULES)}")

    def decorator(fn: Callable[["CellContext"], MethodResult]):
        if not callable(fn):
            raise UserError(f"method {name!r}: the registered object is not callable")
        source = getattr(sys.modules.get(fn.__module__), "__file__", None) or fn.__module__
        if name in METHODS:
            raise UserError(f"duplicate method name {name!r}: already registered by {METHODS.get(name).source}")
        METHODS.add(name, MethodSpec(name, fn, citation, granularity, schedule, str(source), check_args))
        return fn

    return decorator


def _import_file(path: Path) -> None:
    module_name = f"baselines.{path.stem}" if path.parent == PLUGIN_DIR else f"_pruning_plugin_{path.stem}"
    if module_name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise


def discover(plugin_dirs: list[Path] | None = None) -> None:
    """Import every plugin file and entry point once. A broken one is recorded, never fatal."""
    global _discovered
    dirs = [PLUGIN_DIR] if plugin_dirs is None else plugin_dirs
    if plugin_dirs is None and _discovered:
        return
    for folder in dirs:
        for path in sorted(Path(folder).glob("*.py")):
            if path.name.startswith("_"):
                continue
            try:
                _import_file(path)
            except Exception as exc:  # a plugin's bug must not take the other methods down
                BROKEN[str(path)] = f"{type(exc).__name__}: {exc}".splitlines()[0]
    if plugin_dirs is None:
        for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            try:
                entry.load()
            except Exception as exc:
                BROKEN[f"entry point {entry.name} ({entry.value})"] = f"{type(exc).__name__}: {exc}".splitlines()[0]
        _discovered = True


def get_method(name: str) -> MethodSpec:
    discover()
    if name not in METHODS:
        raise unknown_choice("method", name, METHODS.names())
    return METHODS.get(name)
