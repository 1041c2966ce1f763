"""Datasets: a registry of named datasets, their splits and the paper's augmentation.

`digits` (scikit-learn's handwritten digits) ships inside scikit-learn and is the offline default.
The torchvision datasets read the files torchvision downloads; nothing is downloaded unless
`data.download` is set, and a missing file gives one line saying what to put where; the `data`
stage (`pipelines/data.py`, `benchmark.study.pull`) fetches what a profile needs, with torchvision's MD5s.

Every module of this package other than `base` and `files` is one dataset family and is imported
here, so dropping a file that calls `register_dataset` into this folder adds a dataset.
"""

from __future__ import annotations

import importlib
import pkgutil

from benchmark.cell.data.base import (
    DATASETS,
    DatasetBundle,
    DatasetSpec,
    Split,
    build_dataset,
    get_spec,
    prepare_split,
    register_dataset,
    stratified_split,
)
from benchmark.cell.data.download import Resource, Source
from benchmark.cell.data.files import MEAN_STD

SHARED_MODULES = {"base", "download", "files"}

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if _module not in SHARED_MODULES and not _module.startswith("_"):
        importlib.import_module(f"{__name__}.{_module}")

__all__ = ["DATASETS", "MEAN_STD", "DatasetBundle", "DatasetSpec", "Resource", "Source", "Split", "build_dataset",
           "get_spec", "prepare_split", "register_dataset", "stratified_split"]
