"""Oxford Flowers-102 with its official train/val/test splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torchvision import datasets as tvd

from benchmark.cell.data.base import DATASETS, DatasetBundle, Split, register_dataset
from benchmark.cell.data.download import Resource, Source
from benchmark.cell.data.files import open_dataset, transforms_for
from benchmark.core.config import DataConfig


class _PresenceCheckedFlowers102(tvd.Flowers102):
    """torchvision's Flowers-102 reader, checking presence rather than MD5 (see the CIFAR note)."""

    def _check_integrity(self) -> bool:
        base = Path(self._base_folder)
        return (base / "jpg").is_dir() and all((base / f).is_file() for f, _ in self._file_dict.values() if f.endswith(".mat"))


WHERE = "flowers-102/{jpg/image_NNNNN.jpg,imagelabels.mat,setid.mat}"


def _resources() -> list[Resource]:  # torchvision's URLs and MD5s; the image archive is extracted, then removed
    cls = _PresenceCheckedFlowers102
    return [Resource((cls._download_url_prefix + f,), f, md5, "flowers-102", extract=f.endswith(".tgz"))
            for f, md5 in cls._file_dict.values()]


def _present(root: Path) -> bool:
    base = root / "flowers-102"
    return (base / "jpg").is_dir() and (base / "imagelabels.mat").is_file() and (base / "setid.mat").is_file()


def _flowers(cfg: DataConfig, seed: int) -> DatasetBundle:
    spec = DATASETS.get("flowers102")
    where = WHERE
    train_tf, eval_tf = transforms_for(spec, cfg, cifar_style=False)
    make = lambda split, tf, dl: _PresenceCheckedFlowers102(cfg.root, split=split, transform=tf, download=dl)  # noqa: E731
    train = open_dataset("flowers102", cfg, where, lambda dl: make("train", train_tf, dl))
    val, test = make("val", eval_tf, False), make("test", eval_tf, False)
    # Flowers-102 has official splits; the split record is their sizes so the hash still identifies it.
    split = Split(np.arange(len(train)), np.arange(len(val)), np.arange(len(test)))
    return DatasetBundle("flowers102", train, val, test, 102, 3, cfg.input_size or spec.native_size, split)


register_dataset("flowers102", build=_flowers, num_classes=102, in_chans=3, native_size=224, augment_default=True,
                 description="Oxford Flowers-102 (official train/val/test splits)",
                 fetch=Source("download", WHERE, _resources, _present, 344_878_000))
