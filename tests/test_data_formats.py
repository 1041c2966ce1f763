"""The torchvision datasets and `imagefolder`, read from tiny files written in their real formats.

Each test writes a handful of samples in the on-disk layout the real dataset ships in (IDX files,
Python-2 pickles, JPEGs + MATLAB files, class folders of PNGs) under `tmp_path` and loads them
through `benchmark.cell.data.build_dataset`, so torchvision's real reading code runs; nothing is
mocked and nothing is downloaded.
"""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from benchmark.cell.data import MEAN_STD, build_dataset
from benchmark.core.config import DataConfig
from benchmark.core.errors import UserError

GRAY_MEAN, GRAY_STD = (np.asarray(v, dtype=np.float32) for v in MEAN_STD[1])
RGB_MEAN, RGB_STD = (np.asarray(v, dtype=np.float32) for v in MEAN_STD[3])


def _cfg(name: str, root: Path, **kwargs) -> DataConfig:
    return DataConfig(name=name, root=str(root), download=False, **kwargs)


def _split_is_partition(split, n: int) -> None:
    parts = [np.asarray(p) for p in (split.train, split.val, split.test)]
    joined = np.concatenate(parts)
    assert len(joined) == len(set(joined.tolist())) == n
    assert sorted(joined.tolist()) == list(range(n))


def _labels(ds) -> list[int]:
    return [int(ds[i][1]) for i in range(len(ds))]


# ----------------------------------------------------------------------------------------------
# MNIST family: the four uncompressed IDX files in <Class>/raw


MNIST_FOLDERS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST", "kmnist": "KMNIST"}
MNIST_CLASSES = np.array([0, 3, 5, 7, 9])


def _write_idx(path: Path, array: np.ndarray) -> None:
    """An IDX file: magic (0x08 = unsigned byte, then the number of dims), big-endian dims, data."""
    assert array.dtype == np.uint8
    magic = 0x0800 | array.ndim  # 2051 for images (3 dims), 2049 for labels (1 dim)
    header = struct.pack(">I", magic) + struct.pack(">" + "I" * array.ndim, *array.shape)
    path.write_bytes(header + array.tobytes())


def write_mnist(root: Path, folder: str, n_train: int = 40, n_test: int = 10) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    data = {
        "train_x": rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8),
        "train_y": rng.permutation(np.repeat(MNIST_CLASSES, n_train // len(MNIST_CLASSES))).astype(np.uint8),
        "test_x": rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8),
        "test_y": rng.permutation(np.repeat(MNIST_CLASSES, n_test // len(MNIST_CLASSES))).astype(np.uint8),
    }
    data["train_x"][:, 0, 0], data["train_x"][:, 0, 1] = 0, 255  # the extremes of the range
    _write_idx(raw / "train-images-idx3-ubyte", data["train_x"])
    _write_idx(raw / "train-labels-idx1-ubyte", data["train_y"])
    _write_idx(raw / "t10k-images-idx3-ubyte", data["test_x"])
    _write_idx(raw / "t10k-labels-idx1-ubyte", data["test_y"])
    return data


def _gray_normalised(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(((img.astype(np.float32) / 255.0 - GRAY_MEAN[0]) / GRAY_STD[0])[None])


def test_idx_writer_uses_the_real_header(tmp_path):
    _write_idx(tmp_path / "images", np.zeros((3, 28, 28), np.uint8))
    _write_idx(tmp_path / "labels", np.zeros(3, np.uint8))
    assert struct.unpack(">IIII", (tmp_path / "images").read_bytes()[:16]) == (2051, 3, 28, 28)
    assert struct.unpack(">II", (tmp_path / "labels").read_bytes()[:8]) == (2049, 3)
    assert (tmp_path / "images").stat().st_size == 16 + 3 * 28 * 28


@pytest.mark.parametrize("name", sorted(MNIST_FOLDERS))
def test_mnist_family_reads_idx_files(tmp_path, name):
    data = write_mnist(tmp_path, MNIST_FOLDERS[name])
    bundle = build_dataset(_cfg(name, tmp_path, val_fraction=0.25), seed=0)

    assert bundle.name == name
    assert (bundle.num_classes, bundle.in_chans, bundle.input_size) == (10, 1, 28)
    assert bundle.sizes() == {"train": 30, "val": 10, "test": 10}  # train + val = the official 40
    _split_is_partition(bundle.split, 40)
    assert len(bundle.split.test) == 0  # the official test set is used as is

    # Exact pixels: ToTensor + Normalize((0.5,), (0.5,)), no resize, no augmentation by default.
    for part, index, images, labels in (
        (bundle.train, bundle.split.train, data["train_x"], data["train_y"]),
        (bundle.val, bundle.split.val, data["train_x"], data["train_y"]),
        (bundle.test, np.arange(10), data["test_x"], data["test_y"]),
    ):
        for i in (0, len(part) - 1):
            x, y = part[i]
            assert x.shape == (1, 28, 28) and x.dtype == torch.float32
            torch.testing.assert_close(x, _gray_normalised(images[index[i]]))
            assert y == int(labels[index[i]])
        assert _labels(part) == labels[index].tolist()
        assert set(_labels(part)) <= set(range(bundle.num_classes))

    x, _ = bundle.train[0]
    assert x.min().item() == pytest.approx(-1.0) and x.max().item() == pytest.approx(1.0)
    # The validation split is stratified: 10 of 40 samples, 2 of each of the 5 classes.
    assert sorted(_labels(bundle.val)) == sorted(np.repeat(MNIST_CLASSES, 2).tolist())
    # MNIST-style datasets are not augmented by default: two reads are the same.
    torch.testing.assert_close(bundle.train[3][0], bundle.train[3][0], rtol=0, atol=0)


def test_mnist_input_size_resizes_every_split(tmp_path):
    write_mnist(tmp_path, "MNIST")
    bundle = build_dataset(_cfg("mnist", tmp_path, input_size=32, val_fraction=0.25), seed=0)
    assert bundle.input_size == 32
    for part in (bundle.train, bundle.val, bundle.test):
        assert part[0][0].shape == (1, 32, 32)


# ----------------------------------------------------------------------------------------------
# CIFAR: the Python-2 pickles of cifar-10-python.tar.gz / cifar-100-python.tar.gz


class _Py2Pickler(pickle._Pickler):
    """Writes pickles the way CIFAR's were written (Python 2, protocol 2): byte strings as Python 2
    `str` (SHORT_BINSTRING / BINSTRING), numpy arrays via `numpy.core.multiarray._reconstruct`.
    So, as with the real files, `pickle.load(f, encoding="latin1")` gives `str` keys ('data') and
    `encoding="bytes"` gives b'data'."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj: bytes) -> None:
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str

    def save_global(self, obj, name=None):
        if getattr(obj, "__name__", None) == "_reconstruct" and "multiarray" in getattr(obj, "__module__", ""):
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
            self.memoize(obj)
            return
        super().save_global(obj, name)


def _py2_dump(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        _Py2Pickler(f, protocol=2).dump(obj)


def _cifar_images(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)  # row = 1024 R, 1024 G, 1024 B


def write_cifar10(root: Path, per_batch: int = 8, n_test: int = 10) -> dict:
    rng = np.random.default_rng(1)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    classes = [0, 2, 4, 6, 9]
    train_y = rng.permutation(np.repeat(classes, 5 * per_batch // len(classes))).tolist()
    train_x = _cifar_images(rng, 5 * per_batch)
    for b in range(5):
        rows = slice(b * per_batch, (b + 1) * per_batch)
        _py2_dump(
            folder / f"data_batch_{b + 1}",
            {
                b"batch_label": f"training batch {b + 1} of 5".encode(),
                b"labels": train_y[rows],
                b"data": train_x[rows],
                b"filenames": [f"img_{i}.png".encode() for i in range(per_batch)],
            },
        )
    test_y = rng.permutation(np.repeat(classes, n_test // len(classes))).tolist()
    test_x = _cifar_images(rng, n_test)
    _py2_dump(
        folder / "test_batch",
        {
            b"batch_label": b"testing batch 1 of 1",
            b"labels": test_y,
            b"data": test_x,
            b"filenames": [f"test_{i}.png".encode() for i in range(n_test)],
        },
    )
    names = [
        n.encode() for n in ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    ]
    _py2_dump(folder / "batches.meta", {b"num_cases_per_batch": per_batch, b"label_names": names, b"num_vis": 3072})
    return {"train_x": train_x, "train_y": np.asarray(train_y), "test_x": test_x, "test_y": np.asarray(test_y)}


def write_cifar100(root: Path, n_train: int = 40, n_test: int = 10) -> dict:
    rng = np.random.default_rng(2)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    classes = [0, 17, 42, 63, 99]
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        fine = rng.permutation(np.repeat(classes, n // len(classes))).tolist()
        x = _cifar_images(rng, n)
        _py2_dump(
            folder / split,
            {
                b"filenames": [f"{split}_{i}.png".encode() for i in range(n)],
                b"batch_label": f"{split}ing batch 1 of 1".encode(),
                b"fine_labels": fine,
                b"coarse_labels": [f // 5 for f in fine],
                b"data": x,
            },
        )
        out[f"{split}_x"], out[f"{split}_y"] = x, np.asarray(fine)
    _py2_dump(
        folder / "meta",
        {
            b"fine_label_names": [f"fine_{i}".encode() for i in range(100)],
            b"coarse_label_names": [f"coarse_{i}".encode() for i in range(20)],
        },
    )
    return out


def _rgb_normalised(row: np.ndarray) -> torch.Tensor:
    chw = row.reshape(3, 32, 32).astype(np.float32) / 255.0
    return torch.from_numpy((chw - RGB_MEAN[:, None, None]) / RGB_STD[:, None, None])


CIFAR = {
    "cifar10": (write_cifar10, 10, "cifar-10-batches-py"),
    "cifar100": (write_cifar100, 100, "cifar-100-python"),
}


def test_py2_pickle_matches_the_real_cifar_key_types(tmp_path):
    write_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_1"
    with open(path, "rb") as f:  # how the CIFAR page says to read it
        as_bytes = pickle.load(f, encoding="bytes")
    with open(path, "rb") as f:  # how torchvision reads it
        as_str = pickle.load(f, encoding="latin1")
    assert set(as_bytes) == {b"batch_label", b"labels", b"data", b"filenames"}
    assert set(as_str) == {"batch_label", "labels", "data", "filenames"}
    assert as_str["data"].dtype == np.uint8 and as_str["data"].shape == (8, 3072)
    np.testing.assert_array_equal(as_str["data"], as_bytes[b"data"])


@pytest.mark.parametrize("name", sorted(CIFAR))
def test_cifar_reads_pickled_batches(tmp_path, name):
    write, num_classes, _ = CIFAR[name]
    data = write(tmp_path)
    bundle = build_dataset(_cfg(name, tmp_path, val_fraction=0.25), seed=0)

    assert bundle.name == name
    assert (bundle.num_classes, bundle.in_chans, bundle.input_size) == (num_classes, 3, 32)
    assert bundle.sizes() == {"train": 30, "val": 10, "test": 10}  # train + val = the official 40
    _split_is_partition(bundle.split, 40)
    # The file's rows are R, G, B planes; the samples must be those pixels, normalised.
    for part, index, images, labels in (
        (bundle.val, bundle.split.val, data["train_x"], data["train_y"]),
        (bundle.test, np.arange(10), data["test_x"], data["test_y"]),
    ):
        for i in range(len(part)):
            x, y = part[i]
            assert x.shape == (3, 32, 32) and x.dtype == torch.float32
            torch.testing.assert_close(x, _rgb_normalised(images[index[i]]))
            assert y == int(labels[index[i]])
    for part, index, labels in (
        (bundle.train, bundle.split.train, data["train_y"]),
        (bundle.val, bundle.split.val, data["train_y"]),
        (bundle.test, np.arange(10), data["test_y"]),
    ):
        assert _labels(part) == labels[index].tolist()
        assert all(0 <= y < num_classes for y in _labels(part))
    # Normalised with the ImageNet statistics: every value lies in [(0 - mean) / std, (1 - mean) / std].
    x = torch.stack([bundle.train[i][0] for i in range(len(bundle.train))])
    lo, hi = torch.from_numpy(-RGB_MEAN / RGB_STD), torch.from_numpy((1 - RGB_MEAN) / RGB_STD)
    assert (x.amin(dim=(0, 2, 3)) >= lo - 1e-5).all() and (x.amax(dim=(0, 2, 3)) <= hi + 1e-5).all()
    assert x.mean().abs() < 1.0 and 0.5 < x.std() < 2.0


@pytest.mark.parametrize("name", sorted(CIFAR))
def test_cifar_train_split_augments_and_val_does_not(tmp_path, name):
    write, _, _ = CIFAR[name]
    data = write(tmp_path)
    torch.manual_seed(0)
    bundle = build_dataset(_cfg(name, tmp_path, val_fraction=0.25), seed=0)  # augment=None: the paper's (on)

    reads = [bundle.train[0][0] for _ in range(6)]
    assert all(r.shape == (3, 32, 32) for r in reads)
    assert any(not torch.equal(reads[0], r) for r in reads[1:]), "training samples are not augmented"
    assert {bundle.train[0][1] for _ in range(3)} == {int(data["train_y"][bundle.split.train[0]])}

    # Validation and test read the stored pixels, unchanged, every time.
    for i in range(len(bundle.val)):
        first, second = bundle.val[i][0], bundle.val[i][0]
        assert torch.equal(first, second)
        torch.testing.assert_close(first, _rgb_normalised(data["train_x"][bundle.split.val[i]]))
    assert torch.equal(bundle.test[0][0], bundle.test[0][0])

    plain = build_dataset(_cfg(name, tmp_path, val_fraction=0.25, augment=False), seed=0)
    reads = [plain.train[0][0] for _ in range(4)]
    assert all(torch.equal(reads[0], r) for r in reads[1:])
    torch.testing.assert_close(reads[0], _rgb_normalised(data["train_x"][plain.split.train[0]]))


def test_cifar_input_size_resizes(tmp_path):
    write_cifar10(tmp_path)
    bundle = build_dataset(_cfg("cifar10", tmp_path, val_fraction=0.25, input_size=16), seed=0)
    assert bundle.input_size == 16
    for part in (bundle.train, bundle.val, bundle.test):
        assert part[0][0].shape == (3, 16, 16)


# ----------------------------------------------------------------------------------------------
# Flowers-102: jpg/image_NNNNN.jpg, imagelabels.mat, setid.mat (MATLAB row vectors, 1-based)


def _textured(rng: np.random.Generator, base: tuple[int, int, int], w: int, h: int) -> np.ndarray:
    """A colour with texture: its mean is known, and crops / flips of it differ."""
    noise = rng.integers(-25, 26, size=(h, w, 3))
    return np.clip(np.asarray(base)[None, None] + noise, 0, 255).astype(np.uint8)


def _expected_mean(img: np.ndarray) -> np.ndarray:
    return (img.reshape(-1, 3).mean(0) / 255.0 - RGB_MEAN) / RGB_STD


def write_flowers(root: Path) -> dict:
    rng = np.random.default_rng(3)
    base = root / "flowers-102"
    (base / "jpg").mkdir(parents=True)
    n = 16
    images = {}
    for image_id in range(1, n + 1):
        w, h = (48, 40) if image_id % 2 else (40, 56)  # photos of varying size and aspect
        colour = tuple(int(c) for c in rng.integers(50, 206, size=3))
        images[image_id] = _textured(rng, colour, w, h)
        Image.fromarray(images[image_id]).save(base / "jpg" / f"image_{image_id:05d}.jpg", quality=95)
    labels = rng.choice([1, 2, 50, 102], size=n).astype(np.uint8)  # 1-based class ids
    ids = rng.permutation(np.arange(1, n + 1)).astype(np.uint16)  # 1-based image ids, scattered
    setid = {"trnid": ids[:6], "valid": ids[6:10], "tstid": ids[10:]}
    scipy.io.savemat(base / "imagelabels.mat", {"labels": labels[None, :]})
    scipy.io.savemat(base / "setid.mat", {k: v[None, :] for k, v in setid.items()})
    return {"images": images, "labels": labels, "setid": setid}


def test_flowers102_reads_jpgs_and_mat_files(tmp_path):
    data = write_flowers(tmp_path)
    bundle = build_dataset(_cfg("flowers102", tmp_path, input_size=32), seed=0)

    assert (bundle.num_classes, bundle.in_chans, bundle.input_size) == (102, 3, 32)
    assert bundle.sizes() == {"train": 6, "val": 4, "test": 6}  # the official trnid / valid / tstid
    for part, key in ((bundle.train, "trnid"), (bundle.val, "valid"), (bundle.test, "tstid")):
        ids = data["setid"][key]
        assert _labels(part) == (data["labels"][ids - 1].astype(int) - 1).tolist()  # 0-based now
        assert all(0 <= y < 102 for y in _labels(part))
        assert part[0][0].shape == (3, 32, 32) and part[0][0].dtype == torch.float32
    # Evaluation splits: resize + centre crop + ImageNet normalisation, the same every read.
    for part, key in ((bundle.val, "valid"), (bundle.test, "tstid")):
        for i in range(len(part)):
            x = part[i][0]
            assert torch.equal(x, part[i][0])
            expected = _expected_mean(data["images"][int(data["setid"][key][i])])
            np.testing.assert_allclose(x.mean(dim=(1, 2)).numpy(), expected, atol=0.08)
    # Training split: random resized crop + flip by default.
    torch.manual_seed(0)
    reads = [bundle.train[0][0] for _ in range(4)]
    assert any(not torch.equal(reads[0], r) for r in reads[1:])

    # The official split does not depend on the seed, and its hash says so.
    again = build_dataset(_cfg("flowers102", tmp_path, input_size=32), seed=0)
    other = build_dataset(_cfg("flowers102", tmp_path, input_size=32), seed=1)
    assert bundle.split.hash == again.split.hash == other.split.hash


# ----------------------------------------------------------------------------------------------
# imagefolder: root/train/<class>/*.png (+ optional root/test/), or root/<class>/*.png


IMAGEFOLDER_CLASSES = ("cat", "dog", "owl")


def write_imagefolder(root: Path, per_class: dict[str, int]) -> dict:
    """Writes root/<split>/<class>/*.png; returns {split: {class: [images]}}."""
    rng = np.random.default_rng(4)
    out: dict = {}
    for split, count in per_class.items():
        out[split] = {}
        for c, cls in enumerate(IMAGEFOLDER_CLASSES):
            folder = root / split / cls
            folder.mkdir(parents=True)
            out[split][cls] = []
            for i in range(count):
                img = _textured(rng, (60 + 60 * c, 200 - 50 * c, 100), 40, 36)
                Image.fromarray(img).save(folder / f"{i:03d}.png")
                out[split][cls].append(img)
    return out


def test_imagefolder_train_only_splits_val_and_test_off(tmp_path):
    data = write_imagefolder(tmp_path, {"train": 10})
    bundle = build_dataset(_cfg("imagefolder", tmp_path, input_size=32, val_fraction=0.2, test_fraction=0.2), 0)

    assert (bundle.num_classes, bundle.in_chans, bundle.input_size) == (3, 3, 32)
    assert bundle.sizes() == {"train": 19, "val": 5, "test": 6}
    _split_is_partition(bundle.split, 30)
    for part in (bundle.train, bundle.val, bundle.test):
        assert part[0][0].shape == (3, 32, 32)
        labels = _labels(part)
        assert set(labels) == {0, 1, 2}  # stratified: every class in every split
    # ImageFolder orders files by class, then name: sample k is class k // 10, file k % 10.
    for i in range(len(bundle.test)):
        x, y = bundle.test[i]
        k = int(bundle.split.test[i])
        assert y == k // 10
        assert torch.equal(x, bundle.test[i][0])
        np.testing.assert_allclose(
            x.mean(dim=(1, 2)).numpy(), _expected_mean(data["train"][IMAGEFOLDER_CLASSES[y]][k % 10]), atol=0.05
        )
    torch.manual_seed(0)
    reads = [bundle.train[0][0] for _ in range(4)]
    assert any(not torch.equal(reads[0], r) for r in reads[1:])  # augment by default
    assert torch.equal(bundle.val[0][0], bundle.val[0][0])


def test_imagefolder_uses_a_test_folder_when_present(tmp_path):
    data = write_imagefolder(tmp_path, {"train": 8, "test": 2})
    bundle = build_dataset(_cfg("imagefolder", tmp_path, input_size=32, val_fraction=0.25), seed=0)

    assert bundle.num_classes == 3
    assert bundle.sizes() == {"train": 18, "val": 6, "test": 6}  # train + val = the 24 in train/
    _split_is_partition(bundle.split, 24)
    assert len(bundle.split.test) == 0
    assert _labels(bundle.test) == [0, 0, 1, 1, 2, 2]
    for i, (x, y) in enumerate(bundle.test[j] for j in range(6)):
        assert x.shape == (3, 32, 32)
        np.testing.assert_allclose(
            x.mean(dim=(1, 2)).numpy(), _expected_mean(data["test"][IMAGEFOLDER_CLASSES[y]][i % 2]), atol=0.05
        )


def test_imagefolder_class_folders_directly_in_root(tmp_path):
    write_imagefolder(tmp_path / "x", {"flat": 10})
    bundle = build_dataset(
        _cfg("imagefolder", tmp_path / "x" / "flat", input_size=16, val_fraction=0.2, test_fraction=0.2), seed=0
    )
    assert bundle.num_classes == 3
    assert sum(bundle.sizes().values()) == 30
    assert bundle.val[0][0].shape == (3, 16, 16)


# ----------------------------------------------------------------------------------------------
# The split: a function of the seed, identified by its hash


def _write_for(name: str, root: Path) -> None:
    if name in MNIST_FOLDERS:
        write_mnist(root, MNIST_FOLDERS[name])
    elif name in CIFAR:
        CIFAR[name][0](root)
    else:
        write_imagefolder(root, {"train": 10})


@pytest.mark.parametrize("name", ["mnist", "cifar10", "cifar100", "imagefolder"])
def test_split_hash_is_a_function_of_the_seed(tmp_path, name):
    _write_for(name, tmp_path)
    cfg = _cfg(name, tmp_path, input_size=32, val_fraction=0.25, test_fraction=0.2)
    a, b, c = build_dataset(cfg, 0), build_dataset(cfg, 0), build_dataset(cfg, 1)
    assert len(a.split.hash) == 16
    assert a.split.hash == b.split.hash
    for x, y in zip((a.split.train, a.split.val, a.split.test), (b.split.train, b.split.val, b.split.test)):
        np.testing.assert_array_equal(x, y)
    assert _labels(a.val) == _labels(b.val)
    assert a.split.hash != c.split.hash
    assert a.sizes() == c.sizes()


# ----------------------------------------------------------------------------------------------
# Missing files: one line saying what to put where


MISSING = {
    "mnist": ["MNIST/raw", "images-idx3", "labels-idx1", "ubyte", "uncompressed"],
    "fashion_mnist": ["FashionMNIST/raw", "images-idx3", "labels-idx1", "ubyte"],
    "kmnist": ["KMNIST/raw", "images-idx3", "labels-idx1", "ubyte"],
    "cifar10": ["cifar-10-batches-py", "data_batch_1", "test_batch", "batches.meta"],
    "cifar100": ["cifar-100-python", "train", "test", "meta"],
    "flowers102": ["flowers-102", "jpg", "imagelabels.mat", "setid.mat"],
}


def _assert_one_line(message: str, *parts: str) -> None:
    assert message and "\n" not in message and "\r" not in message
    for part in parts:
        assert part in message, f"{part!r} missing from {message!r}"


@pytest.mark.parametrize("name", sorted(MISSING))
def test_missing_files_raise_one_line_user_error(tmp_path, name):
    root = tmp_path / "empty"
    root.mkdir()
    with pytest.raises(UserError) as info:
        build_dataset(_cfg(name, root), seed=0)
    _assert_one_line(str(info.value), repr(name), str(root), "--download", *MISSING[name])
    assert list(root.iterdir()) == []  # nothing downloaded or created


@pytest.mark.parametrize(
    "name,drop",
    [
        ("mnist", "MNIST/raw/t10k-labels-idx1-ubyte"),
        ("cifar10", "cifar-10-batches-py/data_batch_5"),
        ("cifar10", "cifar-10-batches-py/batches.meta"),
        ("cifar100", "cifar-100-python/meta"),
        ("flowers102", "flowers-102/setid.mat"),
    ],
)
def test_one_missing_file_is_a_user_error(tmp_path, name, drop):
    if name == "flowers102":
        write_flowers(tmp_path)
    else:
        _write_for(name, tmp_path)
    (tmp_path / drop).unlink()
    with pytest.raises(UserError) as info:
        build_dataset(_cfg(name, tmp_path, val_fraction=0.25), seed=0)
    _assert_one_line(str(info.value), repr(name), str(tmp_path))


def test_imagefolder_missing_folder_is_a_user_error(tmp_path):
    root = tmp_path / "no" / "such" / "folder"
    with pytest.raises(UserError) as info:
        build_dataset(_cfg("imagefolder", root), seed=0)
    _assert_one_line(str(info.value), "imagefolder", str(root), "class sub-folders")
    assert not root.exists()


def test_imagefolder_without_class_folders_is_a_user_error(tmp_path):
    (tmp_path / "train").mkdir()
    with pytest.raises(UserError) as info:
        build_dataset(_cfg("imagefolder", tmp_path), seed=0)
    _assert_one_line(str(info.value), "imagefolder", str(tmp_path / "train"), "class sub-folders")


# A download that cannot reach its server (here: a closed local port, so nothing is ever fetched,
# with or without internet) is one line too. The MNIST family wraps the URL error in a multi-line
# RuntimeError; CIFAR and Flowers-102 let urllib's URLError through.
REFUSED = "http://127.0.0.1:1/"


@pytest.mark.parametrize("name", sorted(MISSING))
def test_failed_download_is_a_one_line_user_error(tmp_path, monkeypatch, name):
    from torchvision import datasets as tvd

    from benchmark.cell.data import cifar, flowers

    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    for cls in (tvd.MNIST, tvd.FashionMNIST, tvd.KMNIST):
        monkeypatch.setattr(cls, "mirrors", [REFUSED])
    monkeypatch.setattr(cifar._PresenceCheckedCIFAR10, "url", REFUSED + "cifar-10-python.tar.gz")
    monkeypatch.setattr(cifar._PresenceCheckedCIFAR100, "url", REFUSED + "cifar-100-python.tar.gz")
    monkeypatch.setattr(flowers._PresenceCheckedFlowers102, "_download_url_prefix", REFUSED)
    with pytest.raises(UserError) as info:
        build_dataset(DataConfig(name=name, root=str(tmp_path), download=True), seed=0)
    _assert_one_line(str(info.value), "download of dataset", repr(name), "failed", str(tmp_path), MISSING[name][0])
