"""Plugin discovery: the method registry, filled by plugin files and by installed packages.

A method is a function `fn(ctx: CellContext) -> MethodResult` registered with `@register_method`.
Plugin files are the `*.py` files in `baselines/` and in the folders listed in the environment
variable PRUNING_BENCH_PLUGINS (separated by `os.pathsep`, ':' on Linux), so a method can live
outside the repository; installed packages publish methods through the entry-point group
`pruning_bench.methods` (each entry point names a module to import).

A plugin that cannot be loaded (an import error, a duplicate method name, a broken contract such
as an unknown granularity) is recorded in BROKEN with a one-line problem; the other methods load.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib
import importlib.metadata
import importlib.util
import os
import sys
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmark.cell.spec import GRANULARITIES, SCHEDULES, TAGS, MethodResult, MethodSpec, check_capabilities
from benchmark.core.errors import UserError, unknown_choice
from benchmark.core.paths import PROJECT_ROOT
from benchmark.core.registry import Registry

if TYPE_CHECKING:
    from benchmark.cell.context import CellContext

__all__ = [
    "GRANULARITIES",
    "SCHEDULES",
    "TAGS",
    "METHODS",
    "BROKEN",
    "MethodResult",
    "MethodSpec",
    "discover",
    "get_method",
    "register_method",
    "broken_warnings",
]

ENTRY_POINT_GROUP = "pruning_bench.methods"
PLUGIN_DIR = PROJECT_ROOT / "baselines"
PLUGIN_PATH_ENV = "PRUNING_BENCH_PLUGINS"


METHODS: Registry[MethodSpec] = Registry("method")
BROKEN: dict[str, str] = {}  # plugin file, folder or entry point -> one-line problem
BROKEN_NAMES: dict[str, str] = {}  # method name a broken plugin meant to register -> its key in BROKEN
_scanned: set[Path] = set()  # plugin folders already imported
_entry_points_loaded = False
_pending: list[MethodSpec] | None = None  # while a plugin file loads: its methods, added only if it loads


def register_method(
    name: str,
    *,
    citation: str,
    granularity: str,
    schedule: str,
    check_args: Callable[[dict], Any] | None = None,
    takes_sparsity: bool = False,
    needs_batchnorm: bool = False,
    tags: Iterable[str] = (),
    control_of: str | None = None,
    from_twin: Iterable[str] = (),
):
    """Decorator that registers a pruning method under `name`, with its capabilities (see `spec`).

    `check_args(method_args)` validates the method's own settings before anything runs.
    A contract violation (bad name, citation, granularity, schedule, flag or tag, duplicate name, a
    non-callable function or `check_args`) raises UserError; during plugin discovery that marks
    the plugin BROKEN.
    """
    tags = check_capabilities(name, citation, granularity, schedule, takes_sparsity, needs_batchnorm, tags, check_args)
    if control_of is not None:
        if not isinstance(control_of, str) or not control_of.strip():
            raise UserError(f"method {name!r}: control_of must be a method name, got {control_of!r}")
        tags = tags | {"control"}
    if isinstance(from_twin, str) or not all(isinstance(k, str) and k for k in from_twin):
        raise UserError(f"method {name!r}: from_twin must be a list of metric names, got {from_twin!r}")
    from_twin = tuple(from_twin)

    def decorator(fn: Callable[[CellContext], MethodResult]):
        if not callable(fn):
            raise UserError(f"method {name!r}: the registered object is not callable (got {type(fn).__name__})")
        module = getattr(fn, "__module__", None)
        source = getattr(sys.modules.get(module), "__file__", None) or module
        if name in METHODS:
            raise UserError(f"duplicate method name {name!r}: already registered by {METHODS.get(name).source}")
        spec = MethodSpec(
            name,
            fn,
            citation,
            granularity,
            schedule,
            str(source),
            check_args,
            takes_sparsity=takes_sparsity,
            needs_batchnorm=needs_batchnorm,
            tags=tags,
            control_of=control_of,
            from_twin=from_twin,
        )
        if _pending is None:
            METHODS.add(name, spec)
        else:
            earlier = next((p for p in _pending if p.name == name), None)
            if earlier is not None:
                raise UserError(f"duplicate method name {name!r}: already registered by {earlier.source}")
            _pending.append(spec)
        return fn

    return decorator


def plugin_folders() -> list[Path]:
    """`baselines/` and the folders named by PRUNING_BENCH_PLUGINS, each once, in that order."""
    return list(_plugin_folders(os.environ.get(PLUGIN_PATH_ENV, ""), os.getcwd()))


@functools.lru_cache(maxsize=8)
def _plugin_folders(variable: str, cwd: str) -> tuple[Path, ...]:
    """The folders of one value of the variable (and working folder, which relative entries depend on):
    resolved once, not on every `get_method` (a study of 10,000 cells calls it ~50,000 times)."""
    dirs = [PLUGIN_DIR]
    for entry in variable.split(os.pathsep):
        if entry.strip():
            dirs.append(Path(entry.strip()).expanduser())
    unique: list[Path] = []
    for folder in dirs:
        if folder.resolve() not in {d.resolve() for d in unique}:
            unique.append(folder)
    return tuple(unique)


def _module_name(path: Path) -> str:
    if path.parent.resolve() == PLUGIN_DIR:
        return f"baselines.{path.stem}"
    # Files of the same name in different folders must not share a module.
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]
    return f"_pruning_plugin_{path.stem}_{digest}"


def _import_file(path: Path) -> None:
    """Import one plugin file; its methods are registered only if the whole file loads."""
    global _pending
    module_name = _module_name(path)
    if module_name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    outer, _pending = _pending, []
    pending = _pending
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    finally:
        _pending = outer
        # Methods of modules the plugin imported are kept even if the plugin itself failed.
        ok = sys.modules.get(module_name) is module
        for method in pending:
            if (ok or getattr(method.fn, "__module__", None) != module_name) and method.name not in METHODS:
                _commit(method)


def _commit(method: MethodSpec) -> None:
    if _pending is None:
        METHODS.add(method.name, method)
    else:
        _pending.append(method)


def describe_error(exc: BaseException, origin: Path | None = None) -> str:
    """One line: a UserError's message, or 'Type: message' (plus the plugin's line) for anything else."""
    text = " ".join(str(exc).split())  # one line, whatever the message held
    if isinstance(exc, UserError):
        return text or "invalid plugin"
    problem = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    if origin is not None and not isinstance(exc, SyntaxError):  # a SyntaxError names its line already
        lines = [
            f.lineno for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename).resolve() == origin.resolve()
        ]
        if lines:
            problem += f" (line {lines[-1]})"
    return problem


def _declared_names(path: Path) -> list[str]:
    """The names a plugin file passes to `register_method(...)`, read from its source (best effort)."""
    try:
        tree = ast.parse(path.read_text())
    except (OSError, SyntaxError, ValueError, UnicodeDecodeError):
        return []
    names = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if called == "register_method":
                names.append(node.args[0].value)
    return names


def _mark_broken(where: str, problem: str, names: list[str]) -> None:
    BROKEN[where] = problem
    for name in names:
        if name not in METHODS:
            BROKEN_NAMES.setdefault(name, where)


def _scan(folder: Path) -> None:
    if not folder.is_dir():
        _mark_broken(str(folder), f"plugin folder not found (from {PLUGIN_PATH_ENV})", [])
        return
    for path in sorted(folder.glob("*.py")):
        if path.name.startswith("_"):
            continue
        try:
            _import_file(path)
        except (Exception, SystemExit) as exc:  # a plugin's bug must not take the other methods down
            _mark_broken(str(path), describe_error(exc, path), _declared_names(path) + [path.stem])


def discover(plugin_dirs: list[Path] | None = None) -> None:
    """Import every plugin file and entry point once. A broken one is recorded in BROKEN, never fatal.

    Without arguments: `baselines/`, the folders in PRUNING_BENCH_PLUGINS and the entry points,
    each folder scanned once per process (one added to the variable later is scanned on the next
    call). With a list of folders: just those, scanned again for files not yet imported.
    """
    global _entry_points_loaded
    for folder in plugin_folders() if plugin_dirs is None else [Path(f) for f in plugin_dirs]:
        key = folder.resolve()
        if plugin_dirs is None and key in _scanned:
            continue
        _scan(folder)
        if folder.is_dir():
            _scanned.add(key)
    if plugin_dirs is None and not _entry_points_loaded:
        _entry_points_loaded = True
        for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            try:
                entry.load()
            except (Exception, SystemExit) as exc:
                _mark_broken(f"entry point {entry.name} ({entry.value})", describe_error(exc), [entry.name])


def broken_warnings() -> list[str]:
    """One `warning:` line per plugin that could not be loaded."""
    return [
        f"warning: plugin {where} is broken, its methods are not available: {problem}"
        for where, problem in sorted(BROKEN.items())
    ]


def get_method(name: str) -> MethodSpec:
    discover()
    if name not in METHODS:
        if name in BROKEN_NAMES:
            where = BROKEN_NAMES[name]
            raise UserError(f"method {name!r} is not available: its plugin {where} is broken: {BROKEN[where]}")
        raise unknown_choice("method", name, METHODS.names())
    return METHODS.get(name)
