"""The MNIST family (MNIST, Fashion-MNIST, KMNIST): torchvision's readers on the four IDX files."""

from __future__ import annotations

from pathlib import Path

from torchvision import datasets as tvd

from benchmark.cell.data.base import DATASETS, DatasetBundle, register_dataset
from benchmark.cell.data.download import Resource, Source
from benchmark.cell.data.files import from_train_test
from benchmark.core.config import DataConfig


def _mnist_family(name: str, cls: type, folder: str, download_bytes: int) -> None:
    where = (
        f"{folder}/raw/{{train,t10k}}-{{images-idx3,labels-idx1}}-ubyte "
        f"(the four IDX files, uncompressed)"
    )

    def build(cfg: DataConfig, seed: int) -> DatasetBundle:
        make = lambda train, tf, dl: cls(cfg.root, train=train, transform=tf, download=dl)  # noqa: E731
        return from_train_test(DATASETS.get(name), cfg, seed, make, where, cifar_style=True)

    def resources() -> list[Resource]:  # torchvision's mirrors and MD5s; each .gz is unpacked, then removed
        return [Resource(tuple(f"{m}{f}" for m in cls.mirrors), f, md5, f"{folder}/raw", extract=True)
                for f, md5 in cls.resources]

    def present(root: Path) -> bool:
        return all((root / folder / "raw" / Path(f).stem).is_file() for f, _ in cls.resources)

    fetch = Source("download", where, resources, present, download_bytes)
    register_dataset(name, build=build, num_classes=10, in_chans=1, native_size=28, augment_default=False,
                     description=f"torchvision {cls.__name__} (IDX files)", fetch=fetch)


_mnist_family("mnist", tvd.MNIST, "MNIST", 11_594_722)
_mnist_family("fashion_mnist", tvd.FashionMNIST, "FashionMNIST", 30_878_645)
_mnist_family("kmnist", tvd.KMNIST, "KMNIST", 21_240_888)
