"""The fully resolved description of one benchmark cell.

A cell is (method, architecture, dataset, seed) plus every knob that can change its result.
Configs are typed dataclasses; YAML files and `--set section.key=value` override the defaults,
and the resolved config is written next to every result so a run can be repeated exactly.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from benchmark.core.errors import UserError, unknown_choice

OPTIMIZERS = ("sgd", "adadelta")
SCHEDULES = ("cosine", "step", "none")
BUDGETS = ("paper", "equal")
PRECISIONS = ("fp32", "bf16", "fp16")


def _field(default: Any, help: str, **kwargs: Any) -> Any:
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help}, **kwargs)
    return field(default=default, metadata={"help": help}, **kwargs)


@dataclass
class DataConfig:
    name: str = _field("digits", "dataset name (`python -m benchmark list datasets`)")
    root: str = _field("data/raw", "folder holding downloaded / local dataset files")
    download: bool = _field(False, "download torchvision datasets into `root` if missing")
    input_size: int | None = _field(None, "square input side in pixels; None = the dataset's default")
    val_fraction: float = _field(0.1, "fraction of the training data held out for validation")
    test_fraction: float = _field(0.2, "test fraction for datasets without an official test split")
    augment: bool | None = _field(None, "training augmentation; None = the paper's choice for the dataset")
    num_workers: int = _field(0, "DataLoader worker processes (0 = load in the main process)")


@dataclass
class ModelConfig:
    arch: str = _field("resnet18", "timm model name (`python -m benchmark list archs`)")
    small_input: bool | None = _field(
        None, "CIFAR-style stem for ResNets (3x3 stride-1 conv, no max-pool); None = on for inputs <= 64 px"
    )
    drop_rate: float = _field(0.0, "dropout before the classifier (timm `drop_rate`)")


@dataclass
class TrainConfig:
    epochs: int = _field(8, "training epochs")
    batch_size: int = _field(64, "mini-batch size")
    optimizer: str = _field("sgd", f"one of {', '.join(OPTIMIZERS)}")
    lr: float = _field(0.05, "learning rate (the paper's Adadelta uses 1.0)")
    momentum: float = _field(0.9, "SGD momentum")
    rho: float = _field(0.9, "Adadelta rho")
    eps: float = _field(1e-6, "Adadelta eps")
    weight_decay: float = _field(5e-4, "L2 weight decay")
    schedule: str = _field("cosine", f"learning-rate schedule: {', '.join(SCHEDULES)}")
    step_size: int = _field(50, "epochs between decays for the step schedule")
    gamma: float = _field(0.1, "decay factor for the step schedule")
    eval_batch_size: int = _field(256, "batch size for evaluation")
    threads: int = _field(
        1, "torch CPU threads the cell computes with; results depend on it, so it is part of the cell's identity"
    )
    budget: str = _field(
        "paper",
        "training budget protocol: 'paper' (post-training methods prune a dense network trained for train.epochs, "
        "then fine-tune on top) or 'equal' (every method's total epochs, dense + fine-tuning included, are "
        "train.epochs)",
    )
    device: str = _field("auto", "where the cell computes: auto (CUDA when present, else CPU) | cpu | cuda | cuda:N")
    precision: str = _field("fp32", f"training/evaluation arithmetic: {', '.join(PRECISIONS)} (bf16/fp16: autocast)")
    channels_last: bool = _field(False, "NHWC memory format for the model and batches (faster convs on GPUs)")


@dataclass
class MeasureConfig:
    latency_batch_sizes: list[int] = _field([1, 64], "batch sizes timed for CPU latency")
    latency_warmup: int = _field(3, "untimed forward passes before timing")
    latency_repeats: int = _field(15, "timed forward passes; the median is reported")
    threads: int | None = _field(None, "torch threads while timing; None = torch's default")


@dataclass
class RunConfig:
    method: str = _field("dense", "pruning method (`python -m benchmark list methods`)")
    seed: int = _field(0, "seed for data split, initialisation and data order")
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    measure: MeasureConfig = field(default_factory=MeasureConfig)
    method_args: dict[str, Any] = _field({}, "method-specific settings, e.g. method_args.sparsity=0.5")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# Where data lives and how it is loaded do not change a result, so they do not change the hash.
NOT_HASHED = {"data.root", "data.download", "data.num_workers"}

# Bump when the meaning of an existing field changes (not when a field with a default is added):
# every config hash changes with it, so no result computed under the old meaning is reused.
SCHEMA_VERSION = 1


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def non_default_fields(cfg: RunConfig) -> dict[str, Any]:
    """The flattened fields of `cfg` that differ from its class's defaults (and affect results)."""
    defaults = _flat_defaults(type(cfg))
    return {
        k: v
        for k, v in flatten(cfg.to_dict()).items()
        if k not in NOT_HASHED and (k not in defaults or defaults[k] != v)
    }


@functools.cache
def _flat_defaults(cls: type) -> dict[str, Any]:
    """The flattened default config of `cls` (computed once: read only)."""
    return flatten(cls().to_dict())


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def config_hash(cfg: RunConfig) -> str:
    """Hash of the fields that differ from their defaults, plus the schema version (as open_lth does).

    Adding a knob with a default leaves every existing hash unchanged. A changed default is caught
    by `same_config`, which compares a stored result's full config with the current one.
    """
    blob = json.dumps(
        {"schema_version": SCHEMA_VERSION, **non_default_fields(cfg)}, sort_keys=True, default=str
    ).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def same_config(stored: dict[str, Any], cfg: RunConfig) -> bool:
    """Whether a result's stored full config describes the same run as `cfg`.

    Fields the stored config lacks were added since (their defaults hold, or the hash would
    differ); every field it has must agree, so a default that changed re-runs the cell.
    """
    if not isinstance(stored, dict):
        return False
    now = {k: v for k, v in flatten(cfg.to_dict()).items() if k not in NOT_HASHED}
    then = {k: v for k, v in flatten(stored).items() if k not in NOT_HASHED}
    return all(now.get(k) == v for k, v in then.items() if k in now)


def valid_keys(cfg: RunConfig | None = None) -> list[str]:
    cfg = cfg or RunConfig()
    keys = [k for k in flatten(cfg.to_dict()) if not k.startswith("method_args")]
    return sorted(keys) + ["method_args.<name>"]


def _type_ok(value: Any, annotation: Any) -> tuple[bool, Any]:
    """Check `value` against a field annotation; return (ok, value converted where lossless)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in typing.get_args(annotation):
            return True, None
        for arg in typing.get_args(annotation):
            if arg is not type(None):
                ok, converted = _type_ok(value, arg)
                if ok:
                    return True, converted
        return False, value
    if origin is list:
        (item_type,) = typing.get_args(annotation)
        if not isinstance(value, list):
            return False, value
        converted = []
        for item in value:
            ok, item = _type_ok(item, item_type)
            if not ok:
                return False, value
            converted.append(item)
        return True, converted
    if origin is dict:
        return isinstance(value, dict), value
    if annotation is bool:
        return isinstance(value, bool), value
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return True, float(value)
        return False, value
    if annotation is str:
        return isinstance(value, str), value
    return True, value


def _type_name(annotation: Any) -> str:
    return str(annotation).replace("typing.", "") if not isinstance(annotation, type) else annotation.__name__


def set_value(cfg: RunConfig, key: str, value: Any) -> None:
    """Set a dotted key such as `train.lr` on `cfg`, checking the key and the value's type."""
    parts = key.split(".")
    if parts[0] == "method_args":
        if len(parts) != 2 or not parts[1]:
            raise UserError(f"bad key {key!r}: method settings are written method_args.<name>=<value>")
        cfg.method_args[parts[1]] = value
        return
    target: Any = cfg
    for depth, part in enumerate(parts):
        hints = _type_hints(type(target))
        if not dataclasses.is_dataclass(target) or part not in hints:
            raise unknown_choice("config key", key, valid_keys())
        if depth < len(parts) - 1:
            target = getattr(target, part)
            continue
        annotation = hints[part]
        if dataclasses.is_dataclass(getattr(target, part)):
            if not isinstance(value, dict):
                raise UserError(f"bad value for {key!r}: expected a mapping of its keys, got {value!r}")
            for sub_key, sub_value in value.items():
                set_value(cfg, f"{key}.{sub_key}", sub_value)
            return
        ok, converted = _type_ok(value, annotation)
        if not ok:
            raise UserError(f"bad value for {key!r}: expected {_type_name(annotation)}, got {value!r}")
        setattr(target, part, converted)


def parse_assignment(text: str) -> tuple[str, Any]:
    """Parse one `key=value`; the value is read as YAML (so 0.1, true, [1, 2] and null work)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise UserError(f"malformed --set {text!r}: expected key=value, e.g. train.lr=0.1")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        raise UserError(f"malformed --set {text!r}: the value is not valid YAML") from None
    return key, value


def apply_mapping(cfg: RunConfig, mapping: dict[str, Any], source: str) -> None:
    if not isinstance(mapping, dict):
        raise UserError(f"{source}: expected a mapping of config keys, got {type(mapping).__name__}")
    for key, value in mapping.items():
        set_value(cfg, str(key), value)


def load_yaml(path: str | Path, kind: str = "config file") -> Any:
    """A YAML file's content; a missing or malformed file is a one-line UserError naming `kind`."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{kind} {str(path)!r} not found")
    try:
        return yaml.safe_load(path.read_text()) or {}
    except UnicodeDecodeError:
        raise UserError(f"{kind} {str(path)!r} is not UTF-8 text (a binary file?)") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{kind} {str(path)!r} is not valid YAML: {str(exc).splitlines()[0]}") from None


SEED_MAX = 2**31 - 1  # numpy and torch take seeds in [0, 2**32); per-epoch seeds add the epoch


def _check_finite(cfg: RunConfig) -> None:
    """NaN passes every `<=` check and infinity most; no config value may be either."""
    for key, value in flatten(cfg.to_dict()).items():
        values = value if isinstance(value, list) else [value]
        if any(isinstance(v, float) and not math.isfinite(v) for v in values):
            raise UserError(f"bad value for {key!r}: must be a finite number, got {value}")


def _check_ranges(cfg: RunConfig) -> None:
    t, mo = cfg.train, cfg.model
    ranges = {
        "train.momentum": (t.momentum, 0.0, 1.0, "[0, 1)"),
        "train.rho": (t.rho, 0.0, 1.0, "[0, 1)"),
        "model.drop_rate": (mo.drop_rate, 0.0, 1.0, "[0, 1)"),
    }
    for key, (value, low, high, text) in ranges.items():
        if not low <= value < high:
            raise UserError(f"bad value for {key!r}: must be in {text}, got {value}")
    for key, value in {"train.eps": t.eps, "train.gamma": t.gamma}.items():
        if not value > 0:
            raise UserError(f"bad value for {key!r}: must be > 0, got {value}")
    if not 0 <= cfg.seed <= SEED_MAX:
        raise UserError(f"bad value for 'seed': must be in [0, {SEED_MAX}], got {cfg.seed}")


def validate(cfg: RunConfig) -> None:
    """Range and choice checks that do not need the registries (those are checked by the runner)."""
    _check_finite(cfg)
    _check_ranges(cfg)
    t, d, m = cfg.train, cfg.data, cfg.measure
    positive = {
        "train.epochs": t.epochs,
        "train.batch_size": t.batch_size,
        "train.eval_batch_size": t.eval_batch_size,
        "train.threads": t.threads,
        "train.step_size": t.step_size,
        "measure.latency_repeats": m.latency_repeats,
    }
    for key, value in positive.items():
        if value <= 0:
            raise UserError(f"bad value for {key!r}: must be > 0, got {value}")
    if t.lr <= 0:
        raise UserError(f"bad value for 'train.lr': must be > 0, got {t.lr}")
    if t.weight_decay < 0:
        raise UserError(f"bad value for 'train.weight_decay': must be >= 0, got {t.weight_decay}")
    if t.optimizer not in OPTIMIZERS:
        raise unknown_choice("optimizer", t.optimizer, OPTIMIZERS)
    if t.schedule not in SCHEDULES:
        raise unknown_choice("schedule", t.schedule, SCHEDULES)
    if t.budget not in BUDGETS:
        raise unknown_choice("budget", t.budget, BUDGETS)
    if t.precision not in PRECISIONS:
        raise unknown_choice("precision", t.precision, PRECISIONS)
    for key, value in {"data.val_fraction": d.val_fraction, "data.test_fraction": d.test_fraction}.items():
        if not 0.0 <= value < 1.0:
            raise UserError(f"bad value for {key!r}: must be in [0, 1), got {value}")
    if d.val_fraction + d.test_fraction >= 1.0:
        raise UserError("bad values for 'data.val_fraction' + 'data.test_fraction': their sum must be < 1")
    if d.input_size is not None and d.input_size < 8:
        raise UserError(f"bad value for 'data.input_size': must be >= 8, got {d.input_size}")
    if d.num_workers < 0 or m.latency_warmup < 0:
        raise UserError("bad value: 'data.num_workers' and 'measure.latency_warmup' must be >= 0")
    if not m.latency_batch_sizes or min(m.latency_batch_sizes) <= 0:
        raise UserError(
            f"bad value for 'measure.latency_batch_sizes': need positive sizes, got {m.latency_batch_sizes}"
        )
    if m.threads is not None and m.threads <= 0:
        raise UserError(f"bad value for 'measure.threads': must be > 0 or null, got {m.threads}")
    if cfg.seed < 0:
        raise UserError(f"bad value for 'seed': must be >= 0, got {cfg.seed}")
