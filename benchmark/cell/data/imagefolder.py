"""imagefolder: any local folder of class sub-folders (torchvision ImageFolder)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from torch.utils.data import Subset
from torchvision import datasets as tvd

from benchmark.cell.data.base import DATASETS, DatasetBundle, register_dataset, stratified_split
from benchmark.cell.data.download import Source
from benchmark.cell.data.files import transforms_for
from benchmark.core.config import DataConfig
from benchmark.core.errors import UserError


def _imagefolder(cfg: DataConfig, seed: int) -> DatasetBundle:
    """Any local folder: `root/train` (+ optional `root/val`, `root/test`), or class folders in `root`."""
    spec = DATASETS.get("imagefolder")
    root = Path(cfg.root)
    where = "class sub-folders of images (root/<class>/*.png, or root/train/<class>/... with optional val/ and test/)"
    if not root.is_dir():
        raise UserError(f"dataset 'imagefolder' not found: {str(root)!r} is not a folder; put {where} there")
    train_root = root / "train" if (root / "train").is_dir() else root
    try:
        probe = tvd.ImageFolder(str(train_root))
    except (FileNotFoundError, RuntimeError) as exc:
        raise UserError(f"dataset 'imagefolder' under {str(train_root)!r} is unusable ({exc}); put {where} there") from None
    in_chans = 3
    spec_here = dataclasses.replace(spec, num_classes=len(probe.classes), in_chans=in_chans)
    train_tf, eval_tf = transforms_for(spec_here, cfg, cifar_style=False)
    train_aug = tvd.ImageFolder(str(train_root), transform=train_tf)
    train_plain = tvd.ImageFolder(str(train_root), transform=eval_tf)
    labels = np.asarray(train_aug.targets)
    has_val, has_test = (root / "val").is_dir(), (root / "test").is_dir()
    split = stratified_split(labels, seed, 0.0 if has_val else cfg.val_fraction,
                             0.0 if has_test else cfg.test_fraction)
    val = tvd.ImageFolder(str(root / "val"), transform=eval_tf) if has_val else Subset(train_plain, split.val.tolist())
    test = tvd.ImageFolder(str(root / "test"), transform=eval_tf) if has_test else Subset(train_plain, split.test.tolist())
    return DatasetBundle("imagefolder", Subset(train_aug, split.train.tolist()), val, test,
                         len(probe.classes), in_chans, cfg.input_size or spec.native_size, split)


def _present(root: Path) -> bool:
    folder = root / "train" if (root / "train").is_dir() else root
    return folder.is_dir() and any(p.is_dir() and not p.name.startswith(".") for p in folder.iterdir())


WHERE = "class sub-folders of images (<class>/*.png, or train/<class>/... with optional val/ and test/)"
register_dataset("imagefolder", build=_imagefolder, num_classes=None, in_chans=3, native_size=224,
                 augment_default=True, description="any local folder of class sub-folders (torchvision ImageFolder)",
                 fetch=Source("local", WHERE, None, _present))
