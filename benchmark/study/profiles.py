"""The study declared in params.yaml: profiles and their validation (the cells they expand to: `cells`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmark.core.config import RunConfig, set_value, validate
from benchmark.core.errors import UserError, unknown_choice
from benchmark.core.params import read_params
from benchmark.core.paths import PROJECT_ROOT

PROFILE_KEYS = {
    "datasets",
    "archs",
    "methods",
    "operating_points",
    "edropout_points",
    "seeds",
    "epochs",
    "finetune_epochs",
    "method_args",
    "set",
    "executor",
}
EXECUTOR_KEYS = {"backend", "workers", "threads_per_worker", "cpus_per_cell", "gpus_per_cell", "cell_timeout"}
BACKENDS = ("local", "serial", "ray")


@dataclass
class ExecutorSettings:
    """How cells are run: `local` (a process pool on this machine), `serial` (in this process), `ray`."""

    backend: str = "local"
    workers: int | None = None  # local: parallel cells; None = one per CPU core
    threads_per_worker: int | None = None  # torch threads per cell; None = cores // workers (>= 1)
    cpus_per_cell: float = 1.0  # ray: CPUs requested per cell
    gpus_per_cell: float = 0.0  # ray: GPUs requested per cell
    # Seconds one cell may run before it is stopped and recorded FAILED ("timed out after N s"); None =
    # TIMEOUT_FACTOR x the longest cell this study has finished so far (at least TIMEOUT_FLOOR s), no
    # limit before the first one finishes; 0 = no limit.
    cell_timeout: float | None = None


@dataclass
class Profile:
    name: str
    datasets: list[str]
    archs: list[str]
    seeds: list[int]
    epochs: int
    overrides: dict[str, Any] = field(default_factory=dict)
    methods: list[str] = field(default_factory=lambda: ["dense"])
    operating_points: list[float | str] = field(default_factory=lambda: [0.5])
    finetune_epochs: int | None = None
    method_args: dict[str, dict[str, Any]] = field(default_factory=dict)
    executor: ExecutorSettings = field(default_factory=ExecutorSettings)
    edropout_points: list[dict[str, Any]] = field(default_factory=lambda: [{}])

    def config(self, method: str, dataset: str, arch: str, seed: int, point: dict | None = None) -> RunConfig:
        """The cell's config. A control starts from the settings of the method it controls; EDropout and
        its controls take the EDropout operating point `point` (e.g. {'p_init': 0.3}) on top."""
        from benchmark.cell.plugins import get_method

        cfg = RunConfig(method=method, seed=seed)
        cfg.data.name, cfg.model.arch, cfg.train.epochs = dataset, arch, self.epochs
        for key, value in self.overrides.items():
            set_value(cfg, key, value)
        control_of = None if method == "dense" else get_method(method).control_of
        if control_of is not None:
            cfg.method_args.update(self.method_args.get(control_of, {}))
        cfg.method_args.update(self.method_args.get(method, {}))
        if point and EDROPOUT in (method, control_of):
            cfg.method_args.update(point)
        return cfg


EDROPOUT = "edropout"


def point_label(point: dict[str, Any]) -> str:
    """An EDropout operating point's name: 'p_init=0.3' ('' for the method's defaults)."""
    return ",".join(
        f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}" for key, value in point.items()
    )


def load_params(path: str | Path = PROJECT_ROOT / "params.yaml") -> dict[str, Any]:
    path = Path(path)
    params = read_params(path, "study file")  # bounded: no alias bombs, no huge files
    if not isinstance(params, dict) or not isinstance(params.get("profiles"), dict) or not params["profiles"]:
        raise UserError(f"{path.name}: expected a 'profiles' mapping of named study profiles")
    return params


def _list(profile: str, key: str, value: Any, item_type: type) -> list:
    if not isinstance(value, list) or not value:
        raise UserError(f"params.yaml: profiles.{profile}.{key} must be a non-empty list, got {value!r}")
    for item in value:
        if not isinstance(item, item_type) or isinstance(item, bool):
            raise UserError(f"params.yaml: profiles.{profile}.{key} holds {item!r}, expected {item_type.__name__}")
    if len(set(value)) != len(value):
        raise UserError(f"params.yaml: profiles.{profile}.{key} lists a value twice: {value!r}")
    return value


def get_profile(params: dict[str, Any], name: str | None = None) -> Profile:
    """The named (or active) profile, checked completely before any cell runs."""
    from benchmark.cell import data, models

    profiles = params["profiles"]
    name = name if name is not None else params.get("profile", "default")
    if name not in profiles:
        raise UserError(f"params.yaml: profile: {unknown_choice('profile', name, profiles)}")
    raw = profiles[name]
    if not isinstance(raw, dict):
        raise UserError(f"params.yaml: profiles.{name} must be a mapping")
    unknown = set(raw) - PROFILE_KEYS
    if unknown:
        key = min(unknown)
        raise unknown_choice(f"key in profiles.{name}", key, PROFILE_KEYS)
    epochs = raw.get("epochs")
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs <= 0:
        raise UserError(f"params.yaml: profiles.{name}.epochs must be a positive integer, got {epochs!r}")
    profile = Profile(
        name=name,
        datasets=_list(name, "datasets", raw.get("datasets"), str),
        archs=_list(name, "archs", raw.get("archs"), str),
        seeds=_list(name, "seeds", raw.get("seeds"), int),
        epochs=epochs,
        overrides=raw.get("set") or {},
    )
    if not isinstance(profile.overrides, dict):
        raise UserError(f"params.yaml: profiles.{name}.set must be a mapping of config keys")
    profile.methods = _methods(name, raw.get("methods", "all"))
    profile.operating_points = _operating_points(name, raw.get("operating_points", [0.5]), profile.methods)
    finetune = raw.get("finetune_epochs")
    if finetune is not None and (not isinstance(finetune, int) or isinstance(finetune, bool) or finetune < 0):
        raise UserError(f"params.yaml: profiles.{name}.finetune_epochs must be an integer >= 0, got {finetune!r}")
    profile.finetune_epochs = finetune
    profile.method_args = _method_args(name, raw.get("method_args") or {}, profile.methods)
    profile.edropout_points = _edropout_points(name, raw.get("edropout_points", [{}]), profile)
    profile.executor = _executor(name, raw.get("executor") or {})
    for dataset in profile.datasets:
        data.get_spec(dataset)
    for arch in profile.archs:
        models.check_arch(arch)
    if min(profile.seeds) < 0:
        raise UserError(f"params.yaml: profiles.{name}.seeds must be >= 0, got {profile.seeds}")
    try:
        validate(profile.config("dense", profile.datasets[0], profile.archs[0], profile.seeds[0]))
    except UserError as exc:
        raise UserError(f"params.yaml: profiles.{name}: {exc}") from None
    return profile


def _methods(profile: str, value: Any) -> list[str]:
    from benchmark.cell.plugins import METHODS, discover

    discover()
    if value == "all":
        return METHODS.names()
    for method in _list(profile, "methods", value, str):
        if method not in METHODS:
            raise UserError(
                f"params.yaml: profiles.{profile}.methods: {unknown_choice('method', method, METHODS.names())}"
            )
    return list(value)


def _operating_points(profile: str, value: Any, methods: list[str]) -> list[float | str]:
    key = f"params.yaml: profiles.{profile}.operating_points"
    if not isinstance(value, list) or not value:
        raise UserError(f"{key} must be a non-empty list of rates in [0, 1) and/or 'matched', got {value!r}")
    for point in value:
        if point == "matched":
            if "edropout" not in methods:
                raise UserError(
                    f"{key}: 'matched' uses EDropout's rate, so 'edropout' must be in profiles.{profile}.methods"
                )
        elif isinstance(point, bool) or not isinstance(point, (int, float)) or not 0 <= point < 1:
            raise UserError(f"{key}: {point!r} is not a rate in [0, 1) or 'matched'")
    if len(set(map(str, value))) != len(value):
        raise UserError(f"{key} lists a value twice: {value!r}")
    return list(value)


def _method_args(profile: str, value: Any, methods: list[str]) -> dict[str, dict[str, Any]]:
    from benchmark.cell.plugins import get_method

    key = f"params.yaml: profiles.{profile}.method_args"
    if not isinstance(value, dict):
        raise UserError(f"{key} must map method names to their settings, got {value!r}")
    for method, args in value.items():
        if method not in methods:
            raise UserError(f"{key}: {method!r} is not in profiles.{profile}.methods ({', '.join(methods)})")
        if not isinstance(args, dict):
            raise UserError(f"{key}.{method} must be a mapping of settings, got {args!r}")
        if "sparsity" in args:
            raise UserError(f"{key}.{method}.sparsity: set rates with profiles.{profile}.operating_points")
        try:
            get_method(method).validate_args(dict(args))
        except UserError as exc:
            raise UserError(f"{key}.{method}: {exc}") from None
    return value


def _edropout_points(profile: str, value: Any, prof: Profile) -> list[dict[str, Any]]:
    """EDropout's operating points: settings that move its rate (p_init), one EDropout cell each; its
    controls and the `matched` cells follow every point."""
    from benchmark.cell.plugins import get_method

    key = f"params.yaml: profiles.{profile}.edropout_points"
    if not isinstance(value, list) or not value or not all(isinstance(p, dict) for p in value):
        raise UserError(f"{key} must be a non-empty list of EDropout settings, e.g. [{{p_init: 0.3}}], got {value!r}")
    if value != [{}] and EDROPOUT not in prof.methods:
        raise UserError(f"{key}: sweeps EDropout, so 'edropout' must be in profiles.{profile}.methods")
    labels = [point_label(p) for p in value]
    if len(set(labels)) != len(labels):
        raise UserError(f"{key} lists a point twice: {value!r}")
    for point in value:
        if "sparsity" in point:
            raise UserError(f"{key}: EDropout finds its own rate; move it with p_init, not sparsity")
        try:
            get_method(EDROPOUT).validate_args({**prof.method_args.get(EDROPOUT, {}), **point})
        except UserError as exc:
            raise UserError(f"{key}: {point_label(point)}: {exc}") from None
    return value


def _executor(profile: str, value: Any) -> ExecutorSettings:
    key = f"params.yaml: profiles.{profile}.executor"
    if not isinstance(value, dict):
        raise UserError(f"{key} must be a mapping ({', '.join(sorted(EXECUTOR_KEYS))}), got {value!r}")
    unknown = set(value) - EXECUTOR_KEYS
    if unknown:
        raise UserError(f"{key}: {unknown_choice('setting', min(unknown), EXECUTOR_KEYS)}")
    settings = ExecutorSettings(**value)
    if settings.backend not in BACKENDS:
        raise UserError(f"{key}.backend: {unknown_choice('backend', settings.backend, BACKENDS)}")
    for name in ("workers", "threads_per_worker"):
        n = getattr(settings, name)
        if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
            raise UserError(f"{key}.{name} must be a positive integer, got {n!r}")
    for name in ("cpus_per_cell", "gpus_per_cell", "cell_timeout"):
        n = getattr(settings, name)
        if name == "cell_timeout" and n is None:
            continue
        if isinstance(n, bool) or not isinstance(n, (int, float)) or not math.isfinite(n) or n < 0:
            raise UserError(f"{key}.{name} must be a finite number >= 0, got {n!r}")
    return settings


def set_active_profile(path: Path, name: str) -> None:
    """Point `profile:` in params.yaml at `name`, keeping the file's comments and layout."""
    params = load_params(path)
    get_profile(params, name)  # rejects unknown or invalid profiles before touching the file
    lines = path.read_text().splitlines(keepends=True)
    for i, line in enumerate(lines):
        if line.startswith("profile:"):
            lines[i] = f"profile: {name}\n"
            break
    else:
        lines.insert(0, f"profile: {name}\n")
    path.write_text("".join(lines))
