"""The study declared in params.yaml: profiles, their validation, and the cells they expand to."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from benchmark.config import RunConfig, set_value, validate
from benchmark.errors import UserError, unknown_choice

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PROFILE_KEYS = {"datasets", "archs", "seeds", "epochs", "set", "methods"}


@dataclass
class Profile:
    name: str
    datasets: list[str]
    archs: list[str]
    seeds: list[int]
    epochs: int
    overrides: dict[str, Any] = field(default_factory=dict)

    def config(self, method: str, dataset: str, arch: str, seed: int) -> RunConfig:
        cfg = RunConfig(method=method, seed=seed)
        cfg.data.name, cfg.model.arch, cfg.train.epochs = dataset, arch, self.epochs
        for key, value in self.overrides.items():
            set_value(cfg, key, value)
        return cfg


def load_params(path: str | Path = PROJECT_ROOT / "params.yaml") -> dict[str, Any]:
    path = Path(path)
    try:
        params = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise UserError(f"study file {str(path)!r} not found") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{path.name} is not valid YAML: {str(exc).splitlines()[0]}") from None
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
    from benchmark import data, models

    profiles = params["profiles"]
    name = name if name is not None else params.get("profile", "default")
    if name not in profiles:
        raise unknown_choice("profile", name, profiles)
    raw = profiles[name]
    if not isinstance(raw, dict):
        raise UserError(f"params.yaml: profiles.{name} must be a mapping")
    unknown = set(raw) - PROFILE_KEYS
    if unknown:
        key = sorted(unknown)[0]
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


def cell_dir(results: Path, stage: str, dataset: str, arch: str, seed: int) -> Path:
    return Path(results) / stage / dataset / arch / f"seed{seed}"


def dense_cells(profile: Profile, results: Path) -> list[tuple[RunConfig, Path]]:
    """The dense reference cells of a profile: one per (dataset, arch, seed)."""
    return [
        (profile.config("dense", dataset, arch, seed), cell_dir(results, "dense", dataset, arch, seed))
        for dataset in profile.datasets for arch in profile.archs for seed in profile.seeds
    ]
