"""digits: scikit-learn's 1,797 handwritten digits, shipped offline (the default dataset)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from torchvision import transforms as T

from benchmark.cell.data.base import DATASETS, DatasetBundle, register_dataset, stratified_split
from benchmark.core.config import DataConfig


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


register_dataset("digits", build=_digits, num_classes=10, in_chans=1, native_size=8, augment_default=False,
                 description="scikit-learn's 1,797 handwritten digits (8x8), shipped offline; default")
