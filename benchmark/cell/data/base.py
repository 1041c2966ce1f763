"""What every dataset shares: the split, the bundle a cell trains on, the registry and its spec.

One file per dataset family sits next to this one and registers its datasets with
`register_dataset`; the package imports every such file, so a new file is all a new dataset
takes. A dataset's own file is part of the code fingerprint of the cells that use it, and only
of those.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from benchmark.cell.data.download import BUILTIN, Source
from benchmark.core.config import DataConfig
from benchmark.core.errors import UserError
from benchmark.core.registry import Registry


@dataclass
class Split:
    """Indices of one seed's train / validation / test split, with a hash that identifies it."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray  # empty when the dataset has an official test set

    @property
    def hash(self) -> str:
        h = hashlib.sha256()
        for part in (self.train, self.val, self.test):
            h.update(np.asarray(part, dtype=np.int64).tobytes())
            h.update(b"|")
        return h.hexdigest()[:16]


@dataclass
class DatasetBundle:
    name: str
    train: Dataset
    val: Dataset
    test: Dataset
    num_classes: int
    in_chans: int
    input_size: int
    split: Split

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}



@dataclass(frozen=True, kw_only=True)
class DatasetSpec:
    """A named dataset: how to build it for one seed, and what the rest of the harness needs to know."""

    name: str
    build: Callable[[DataConfig, int], DatasetBundle]
    num_classes: int | None  # None: read from the files (imagefolder)
    in_chans: int
    native_size: int
    augment_default: bool
    description: str
    source: str = ""  # the file that registered it (part of its cells' code fingerprint)
    fetch: Source = BUILTIN  # where its files come from (the `data` stage; `python -m benchmark plan`)


DATASETS: Registry[DatasetSpec] = Registry("dataset")


def register_dataset(name: str, *, build: Callable[[DataConfig, int], DatasetBundle], num_classes: int | None,
                     in_chans: int, native_size: int, augment_default: bool, description: str,
                     fetch: Source = BUILTIN) -> DatasetSpec:
    """Add a dataset to the registry; `build(cfg, seed)` returns its DatasetBundle; `fetch` says where its
    files come from (default: nothing to fetch). A taken name is an error."""
    if not callable(build):
        raise UserError(f"dataset {name!r}: build must be callable, got {type(build).__name__}")
    module = sys.modules.get(getattr(build, "__module__", ""))
    source = getattr(module, "__file__", None) or inspect.getfile(build)
    return DATASETS.add(name, DatasetSpec(
        name=name, build=build, num_classes=num_classes, in_chans=in_chans, native_size=native_size,
        augment_default=augment_default, description=description, source=str(Path(source).resolve()), fetch=fetch))


def get_spec(name: str) -> DatasetSpec:
    return DATASETS.get(name)


def build_dataset(cfg: DataConfig, seed: int) -> DatasetBundle:
    """Build the train / val / test datasets of `cfg.name` for one seed."""
    return get_spec(cfg.name).build(cfg, seed)


def stratified_split(labels: np.ndarray, seed: int, val_fraction: float, test_fraction: float) -> Split:
    """Stratified train/val/test indices; val is a fraction of what remains after the test split."""
    from sklearn.model_selection import train_test_split  # here: scikit-learn's import costs the data stage ~2 s

    labels = np.asarray(labels)
    index = np.arange(len(labels))
    test = np.array([], dtype=np.int64)
    if test_fraction > 0:
        index, test = train_test_split(index, test_size=test_fraction, stratify=labels, random_state=seed)
    val = np.array([], dtype=np.int64)
    if val_fraction > 0:
        index, val = train_test_split(
            index, test_size=val_fraction, stratify=labels[index], random_state=seed + 1
        )
    return Split(np.sort(index), np.sort(val), np.sort(test))


def prepare_split(cfg: DataConfig, seed: int, out_dir: Path) -> dict:
    """Write one seed's split (indices and hash) to `out_dir/<dataset>/seed<k>.json`; return the record."""
    bundle = build_dataset(cfg, seed)
    record = {
        "dataset": cfg.name, "seed": seed, "sizes": bundle.sizes(), "split_hash": bundle.split.hash,
        "train": bundle.split.train.tolist(), "val": bundle.split.val.tolist(), "test": bundle.split.test.tolist(),
    }
    path = Path(out_dir) / cfg.name / f"seed{seed}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record) + "\n")
    return record
