"""The MNIST family (MNIST, Fashion-MNIST, KMNIST): torchvision's readers on the four IDX files."""

from __future__ import annotations

from torchvision import datasets as tvd

from benchmark.cell.data.base import DATASETS, DatasetBundle, register_dataset
from benchmark.cell.data.files import from_train_test
from benchmark.core.config import DataConfig


def _mnist_family(name: str, cls: type, folder: str) -> None:
    where = (
        f"{folder}/raw/{{train,t10k}}-{{images-idx3,labels-idx1}}-ubyte "
        f"(the four IDX files, uncompressed)"
    )

    def build(cfg: DataConfig, seed: int) -> DatasetBundle:
        make = lambda train, tf, dl: cls(cfg.root, train=train, transform=tf, download=dl)  # noqa: E731
        return from_train_test(DATASETS.get(name), cfg, seed, make, where, cifar_style=True)

    register_dataset(name, build=build, num_classes=10, in_chans=1, native_size=28, augment_default=False,
                     description=f"torchvision {cls.__name__} (IDX files)")


_mnist_family("mnist", tvd.MNIST, "MNIST")
_mnist_family("fashion_mnist", tvd.FashionMNIST, "FashionMNIST")
_mnist_family("kmnist", tvd.KMNIST, "KMNIST")
