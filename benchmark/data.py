"""Datasets: a registry of named datasets, their splits and the paper's augmentation.

`digits` (scikit-learn's handwritten digits) is shipped inside scikit-learn and is the offline
default. The torchvision datasets read the files torchvision downloads; nothing is downloaded
unless `data.download` is set, and a missing file gives one line saying what to put where.
"""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.model_selection import train_test_split
from torch.utils.data import Dataset, Subset
from torchvision import datasets as tvd
from torchvision import transforms as T

from benchmark.config import DataConfig
from benchmark.errors import UserError
from benchmark.registry import Registry


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


@dataclass
class DatasetSpec:
    name: str
    build: Callable[[DataConfig, int], DatasetBundle]
    num_classes: int | None  # None: read from the files (imagefolder)
    in_chans: int
    native_size: int
    augment_default: bool
    description: str


DATASETS: Registry[DatasetSpec] = Registry("dataset")


def get_spec(name: str) -> DatasetSpec:
    return DATASETS.get(name)


def build_dataset(cfg: DataConfig, seed: int) -> DatasetBundle:
    """Build the train / val / test datasets of `cfg.name` for one seed."""
    return get_spec(cfg.name).build(cfg, seed)


def stratified_split(labels: np.ndarray, seed: int, val_fraction: float, test_fraction: float) -> Split:
    """Stratified train/val/test indices; val is a fraction of what remains after the test split."""
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


# ----------------------------------------------------------------------------------------------
# digits: in memory, as tensors


class TensorImages(Dataset):
    """Images held as one (N, C, H, W) tensor, with an optional per-sample tensor transform."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: Callable | None = None):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        x = self.images[i]
        if self.transform is not None:
            x = self.transform(x)
        return x, int(self.labels[i])


def _digits(cfg: DataConfig, seed: int) -> DatasetBundle:
    from sklearn.datasets import load_digits

    spec = DATASETS.get("digits")
    raw = load_digits()
    labels = raw.target.astype(np.int64)
    split = stratified_split(labels, seed, cfg.val_fraction, cfg.test_fraction)
    size = cfg.input_size or spec.native_size
    images = torch.from_numpy(raw.images.astype(np.float32) / 16.0).unsqueeze(1)  # (N, 1, 8, 8)
    if size != images.shape[-1]:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    mean, std = images[split.train].mean(), images[split.train].std()
    images = ((images - mean) / std).contiguous()
    targets = torch.from_numpy(labels)
    augment = spec.augment_default if cfg.augment is None else cfg.augment
    # Digits are not mirror-symmetric: augmentation is a small random shift only.
    train_tf = T.RandomCrop(size, padding=max(1, size // 8)) if augment else None

    def part(idx: np.ndarray, transform=None) -> TensorImages:
        idx_t = torch.from_numpy(idx)
        return TensorImages(images[idx_t], targets[idx_t], transform)

    return DatasetBundle(
        "digits", part(split.train, train_tf), part(split.val), part(split.test),
        spec.num_classes, 1, size, split,
    )


DATASETS.add("digits", DatasetSpec(
    "digits", _digits, 10, 1, 16, False,
    "scikit-learn's 1,797 handwritten digits (8x8, upsampled), shipped offline; default",
))


# ----------------------------------------------------------------------------------------------
# torchvision datasets read from `data.root`


MEAN_STD = {
    1: ((0.5,), (0.5,)),
    3: ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


def _transforms(spec: DatasetSpec, cfg: DataConfig, cifar_style: bool) -> tuple[Callable, Callable]:
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


def _missing(name: str, cfg: DataConfig, where: str) -> UserError:
    return UserError(
        f"dataset {name!r} not found under {cfg.root!r}: put {where} there, "
        f"or pass --download (or --set data.download=true) on a machine with internet"
    )


def _open(name: str, cfg: DataConfig, where: str, make: Callable[[bool], Dataset]) -> Dataset:
    """Open a torchvision dataset, turning 'not found' and failed downloads into one-line errors."""
    try:
        return make(cfg.download)
    except RuntimeError as exc:
        text = " ".join(str(exc).split())  # torchvision's messages may span several lines
        if cfg.download and text.startswith("Error downloading"):  # the MNIST family wraps URL errors
            raise UserError(f"download of dataset {name!r} failed ({text}); put {where} under {cfg.root!r}") from None
        if "not found" in text.lower() or "corrupted" in text.lower():
            raise _missing(name, cfg, where) from None
        raise
    except OSError as exc:  # urllib errors are OSErrors: no network, DNS failure, refused
        raise UserError(
            f"download of dataset {name!r} failed ({type(exc).__name__}: {exc}); put {where} under {cfg.root!r}"
        ) from None


def _labels_of(ds: Dataset) -> np.ndarray:
    for attr in ("targets", "_labels", "labels"):
        if hasattr(ds, attr):
            return np.asarray(getattr(ds, attr), dtype=np.int64)
    raise TypeError(f"cannot read labels of {type(ds).__name__}")


def _from_train_test(
    spec: DatasetSpec, cfg: DataConfig, seed: int, make: Callable[[bool, Callable, bool], Dataset],
    where: str, cifar_style: bool,
) -> DatasetBundle:
    """Official train/test sets; validation is a stratified fraction of the training set."""
    train_tf, eval_tf = _transforms(spec, cfg, cifar_style)
    train_aug = _open(spec.name, cfg, where, lambda dl: make(True, train_tf, dl))
    train_plain = make(True, eval_tf, False)
    test = make(False, eval_tf, False)
    split = stratified_split(_labels_of(train_aug), seed, cfg.val_fraction, 0.0)
    return DatasetBundle(
        spec.name, Subset(train_aug, split.train.tolist()), Subset(train_plain, split.val.tolist()), test,
        spec.num_classes, spec.in_chans, cfg.input_size or spec.native_size, split,
    )


def _mnist_family(name: str, cls: type, folder: str) -> None:
    where = (
        f"{folder}/raw/{{train,t10k}}-{{images-idx3,labels-idx1}}-ubyte "
        f"(the four IDX files, uncompressed)"
    )

    def build(cfg: DataConfig, seed: int) -> DatasetBundle:
        make = lambda train, tf, dl: cls(cfg.root, train=train, transform=tf, download=dl)  # noqa: E731
        return _from_train_test(DATASETS.get(name), cfg, seed, make, where, cifar_style=True)

    DATASETS.add(name, DatasetSpec(name, build, 10, 1, 28, False, f"torchvision {cls.__name__} (IDX files)"))


_mnist_family("mnist", tvd.MNIST, "MNIST")
_mnist_family("fashion_mnist", tvd.FashionMNIST, "FashionMNIST")
_mnist_family("kmnist", tvd.KMNIST, "KMNIST")


class _PresenceCheckedCIFAR10(tvd.CIFAR10):
    """torchvision's CIFAR-10 reader, checking that the batch files exist rather than their MD5.

    torchvision verifies MD5 sums when it downloads; files a user placed by hand (or a test wrote
    in the same pickle format) are accepted if present, so the real reading code runs on them.
    """

    def _check_integrity(self) -> bool:
        folder = Path(self.root) / self.base_folder
        return all((folder / name).is_file() for name, _ in self.train_list + self.test_list)

    def _load_meta(self) -> None:
        path = Path(self.root) / self.base_folder / self.meta["filename"]
        if not path.is_file():
            raise RuntimeError("Dataset metadata file not found")
        with open(path, "rb") as infile:
            data = pickle.load(infile, encoding="latin1")
        self.classes = data[self.meta["key"]]
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}


class _PresenceCheckedCIFAR100(_PresenceCheckedCIFAR10, tvd.CIFAR100):
    base_folder = tvd.CIFAR100.base_folder
    train_list = tvd.CIFAR100.train_list
    test_list = tvd.CIFAR100.test_list
    meta = tvd.CIFAR100.meta
    url, filename, tgz_md5 = tvd.CIFAR100.url, tvd.CIFAR100.filename, tvd.CIFAR100.tgz_md5


def _cifar(name: str, cls: type, classes: int, where: str) -> None:
    def build(cfg: DataConfig, seed: int) -> DatasetBundle:
        make = lambda train, tf, dl: cls(cfg.root, train=train, transform=tf, download=dl)  # noqa: E731
        return _from_train_test(DATASETS.get(name), cfg, seed, make, where, cifar_style=True)

    DATASETS.add(name, DatasetSpec(name, build, classes, 3, 32, True, f"CIFAR-{classes} (python pickle batches)"))


_cifar("cifar10", _PresenceCheckedCIFAR10, 10,
       "cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta} (cifar-10-python.tar.gz, extracted)")
_cifar("cifar100", _PresenceCheckedCIFAR100, 100,
       "cifar-100-python/{train,test,meta} (cifar-100-python.tar.gz, extracted)")


class _PresenceCheckedFlowers102(tvd.Flowers102):
    """torchvision's Flowers-102 reader, checking presence rather than MD5 (see the CIFAR note)."""

    def _check_integrity(self) -> bool:
        base = Path(self._base_folder)
        return (base / "jpg").is_dir() and all((base / f).is_file() for f, _ in self._file_dict.values() if f.endswith(".mat"))


def _flowers(cfg: DataConfig, seed: int) -> DatasetBundle:
    spec = DATASETS.get("flowers102")
    where = "flowers-102/{jpg/image_NNNNN.jpg,imagelabels.mat,setid.mat}"
    train_tf, eval_tf = _transforms(spec, cfg, cifar_style=False)
    make = lambda split, tf, dl: _PresenceCheckedFlowers102(cfg.root, split=split, transform=tf, download=dl)  # noqa: E731
    train = _open("flowers102", cfg, where, lambda dl: make("train", train_tf, dl))
    val, test = make("val", eval_tf, False), make("test", eval_tf, False)
    # Flowers-102 has official splits; the split record is their sizes so the hash still identifies it.
    split = Split(np.arange(len(train)), np.arange(len(val)), np.arange(len(test)))
    return DatasetBundle("flowers102", train, val, test, 102, 3, cfg.input_size or spec.native_size, split)


DATASETS.add("flowers102", DatasetSpec(
    "flowers102", _flowers, 102, 3, 224, True, "Oxford Flowers-102 (official train/val/test splits)",
))


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
    spec_here = DatasetSpec("imagefolder", _imagefolder, len(probe.classes), in_chans, spec.native_size,
                            spec.augment_default, spec.description)
    train_tf, eval_tf = _transforms(spec_here, cfg, cifar_style=False)
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


DATASETS.add("imagefolder", DatasetSpec(
    "imagefolder", _imagefolder, None, 3, 224, True, "any local folder of class sub-folders (torchvision ImageFolder)",
))


def prepare_split(cfg: DataConfig, seed: int, out_dir: Path) -> dict:
    """Write one seed's split (indices and hash) to `out_dir/<dataset>/seed<k>.json`; return the record."""
    import json

    bundle = build_dataset(cfg, seed)
    record = {
        "dataset": cfg.name, "seed": seed, "sizes": bundle.sizes(), "split_hash": bundle.split.hash,
        "train": bundle.split.train.tolist(), "val": bundle.split.val.tolist(), "test": bundle.split.test.tolist(),
    }
    path = Path(out_dir) / cfg.name / f"seed{seed}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record) + "\n")
    return record
