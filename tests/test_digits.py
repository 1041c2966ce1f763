import numpy as np
import pytest
import torch

from benchmark.cell.data import build_dataset, prepare_split
from benchmark.core.config import DataConfig


def _labels(ds):
    return np.array([ds[i][1] for i in range(len(ds))])


def test_split_is_stratified_disjoint_and_complete():
    bundle = build_dataset(DataConfig(), seed=0)
    split = bundle.split
    parts = [set(split.train.tolist()), set(split.val.tolist()), set(split.test.tolist())]
    assert sum(map(len, parts)) == 1797 and len(set.union(*parts)) == 1797  # disjoint and complete
    assert bundle.sizes() == {"train": 1293, "val": 144, "test": 360}
    for ds in (bundle.train, bundle.val, bundle.test):
        counts = np.bincount(_labels(ds), minlength=10)
        fractions = counts / counts.sum()
        assert np.all(np.abs(fractions - 0.1) < 0.02)  # each class ~10% in every part
    assert (bundle.num_classes, bundle.in_chans) == (10, 1)


def test_split_depends_on_the_seed_only():
    a, b, c = (build_dataset(DataConfig(), s).split for s in (0, 0, 1))
    assert a.hash == b.hash and np.array_equal(a.test, b.test)
    assert a.hash != c.hash and not np.array_equal(a.test, c.test)


@pytest.mark.parametrize("size", [8, 16, 32])
def test_input_size_and_normalisation(size):
    bundle = build_dataset(DataConfig(input_size=size), seed=0)
    x, y = bundle.train[0]
    assert x.shape == (1, size, size) and 0 <= y < 10
    images = torch.stack([bundle.train[i][0] for i in range(len(bundle.train))])
    assert abs(float(images.mean())) < 0.05 and abs(float(images.std()) - 1) < 0.05


def test_augmentation_is_off_by_default_and_shifts_when_on():
    plain = build_dataset(DataConfig(), seed=0)
    assert torch.equal(plain.train[0][0], plain.train[0][0])
    torch.manual_seed(0)
    augmented = build_dataset(DataConfig(augment=True), seed=0)
    reads = [augmented.train[0][0] for _ in range(8)]
    assert any(not torch.equal(reads[0], r) for r in reads[1:])
    assert torch.equal(augmented.val[0][0], augmented.val[0][0])  # evaluation data never augmented


def test_prepare_split_writes_the_same_split_the_runs_use(tmp_path):
    import json

    record = prepare_split(DataConfig(), 2, tmp_path)
    saved = json.loads((tmp_path / "digits" / "seed2.json").read_text())
    assert saved["split_hash"] == record["split_hash"] == build_dataset(DataConfig(), 2).split.hash
    assert len(saved["train"]) == 1293 and len(saved["test"]) == 360
