"""Shared by the datasets read from files (torchvision readers): transforms, one-line errors, splits."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from torch.utils.data import Dataset, Subset
from torchvision import transforms as T

from benchmark.cell.data.base import DatasetBundle, DatasetSpec, stratified_split
from benchmark.core.config import DataConfig
from benchmark.core.errors import UserError

MEAN_STD = {
    1: ((0.5,), (0.5,)),
    3: ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


def transforms_for(spec: DatasetSpec, cfg: DataConfig, cifar_style: bool) -> tuple[Callable, Callable]:
    size = cfg.input_size or spec.native_size
    augment = spec.augment_default if cfg.augment is None else cfg.augment
    mean, std = MEAN_STD[spec.in_chans]
    tail = [T.ToTensor(), T.Normalize(mean, std)]
    if cifar_style:  # fixed-size images: resize only when asked, paper's crop (pad 4) + flip
        resize = [T.Resize((size, size))] if size != spec.native_size else []
        train = resize + ([T.RandomCrop(size, padding=4), T.RandomHorizontalFlip()] if augment else [])
        return T.Compose(train + tail), T.Compose(resize + tail)
    # variable-size photos (Flowers-102, ImageFolder): the usual ImageNet-style pipeline
    evaluation = [T.Resize(int(size * 256 / 224)), T.CenterCrop(size)]
    train = [T.RandomResizedCrop(size), T.RandomHorizontalFlip()] if augment else evaluation
    return T.Compose(train + tail), T.Compose(evaluation + tail)


def missing_files(name: str, cfg: DataConfig, where: str) -> UserError:
    return UserError(
        f"dataset {name!r} not found under {cfg.root!r}: put {where} there, "
        f"or pass --download (or --set data.download=true) on a machine with internet"
    )


def open_dataset(name: str, cfg: DataConfig, where: str, make: Callable[[bool], Dataset]) -> Dataset:
    """Open a torchvision dataset, turning 'not found' and failed downloads into one-line errors."""
    try:
        return make(cfg.download)
    except RuntimeError as exc:
        text = " ".join(str(exc).split())  # torchvision's messages may span several lines
        if cfg.download and text.startswith("Error downloading"):  # the MNIST family wraps URL errors
            raise UserError(f"download of dataset {name!r} failed ({text}); put {where} under {cfg.root!r}") from None
        if "not found" in text.lower() or "corrupted" in text.lower():
            raise missing_files(name, cfg, where) from None
        raise
    except OSError as exc:  # urllib errors are OSErrors: no network, DNS failure, refused
        raise UserError(
            f"download of dataset {name!r} failed ({type(exc).__name__}: {exc}); put {where} under {cfg.root!r}"
        ) from None


def labels_of(ds: Dataset) -> np.ndarray:
    for attr in ("targets", "_labels", "labels"):
        if hasattr(ds, attr):
            return np.asarray(getattr(ds, attr), dtype=np.int64)
    raise TypeError(f"cannot read labels of {type(ds).__name__}")


def from_train_test(
    spec: DatasetSpec, cfg: DataConfig, seed: int, make: Callable[[bool, Callable, bool], Dataset],
    where: str, cifar_style: bool,
) -> DatasetBundle:
    """Official train/test sets; validation is a stratified fraction of the training set."""
    train_tf, eval_tf = transforms_for(spec, cfg, cifar_style)
    train_aug = open_dataset(spec.name, cfg, where, lambda dl: make(True, train_tf, dl))
    train_plain = make(True, eval_tf, False)
    test = make(False, eval_tf, False)
    split = stratified_split(labels_of(train_aug), seed, cfg.val_fraction, 0.0)
    return DatasetBundle(
        spec.name, Subset(train_aug, split.train.tolist()), Subset(train_plain, split.val.tolist()), test,
        spec.num_classes, spec.in_chans, cfg.input_size or spec.native_size, split,
    )
