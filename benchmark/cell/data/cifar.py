"""CIFAR-10 and CIFAR-100: torchvision's readers on the extracted python pickle batches."""

from __future__ import annotations

import pickle
from pathlib import Path

from torchvision import datasets as tvd

from benchmark.cell.data.base import DATASETS, DatasetBundle, register_dataset
from benchmark.cell.data.download import Resource, Source
from benchmark.cell.data.files import from_train_test
from benchmark.core.config import DataConfig


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


def _cifar(name: str, cls: type, classes: int, where: str, download_bytes: int) -> None:
    def build(cfg: DataConfig, seed: int) -> DatasetBundle:
        make = lambda train, tf, dl: cls(cfg.root, train=train, transform=tf, download=dl)  # noqa: E731
        return from_train_test(DATASETS.get(name), cfg, seed, make, where, cifar_style=True)

    def resources() -> list[Resource]:  # torchvision's URL and MD5; the archive is extracted, then removed
        return [Resource((cls.url,), cls.filename, cls.tgz_md5, "", extract=True)]

    def present(root: Path) -> bool:
        folder = root / cls.base_folder
        return all((folder / f).is_file() for f, _ in cls.train_list + cls.test_list + [(cls.meta["filename"], "")])

    register_dataset(name, build=build, num_classes=classes, in_chans=3, native_size=32, augment_default=True,
                     description=f"CIFAR-{classes} (python pickle batches)",
                     fetch=Source("download", where, resources, present, download_bytes))


_cifar("cifar10", _PresenceCheckedCIFAR10, 10,
       "cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta} (cifar-10-python.tar.gz, extracted)",
       170_498_071)
_cifar("cifar100", _PresenceCheckedCIFAR100, 100,
       "cifar-100-python/{train,test,meta} (cifar-100-python.tar.gz, extracted)", 169_001_437)
