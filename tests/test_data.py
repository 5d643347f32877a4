import gzip
import os
import struct

import numpy as np
import pytest
import torch

from layerscope.data.datasets import (
    DATASETS,
    load_dataset,
    probe_indices,
    read_cifar_binary,
    read_idx,
    train_subset,
    with_label_noise,
)


def write_idx(path, array):
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(">" + "I" * array.ndim, *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


@pytest.fixture
def mnist_dir(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "mnist"
    folder.mkdir()
    train = rng.integers(0, 256, (30, 28, 28), dtype=np.uint8)
    test = rng.integers(0, 256, (10, 28, 28), dtype=np.uint8)
    write_idx(folder / "train-images-idx3-ubyte.gz", train)
    write_idx(folder / "train-labels-idx1-ubyte.gz", np.arange(30) % 10)
    write_idx(folder / "t10k-images-idx3-ubyte", test)  # plain, not gzipped
    write_idx(folder / "t10k-labels-idx1-ubyte", np.arange(10) % 10)
    return tmp_path, train, test


def test_idx_files_are_read_exactly(mnist_dir):
    root, train, test = mnist_dir
    np.testing.assert_array_equal(read_idx(root / "mnist" / "train-images-idx3-ubyte.gz"), train)
    data = load_dataset("mnist", root)
    assert data.x_train.shape == (30, 1, 28, 28) and data.x_test.shape == (10, 1, 28, 28)
    assert data.y_train.tolist() == [i % 10 for i in range(30)]
    # standardised with the training set's statistics, and the valid range maps 0 and 1 pixels
    mean, std = (train / 255.0).mean(), (train / 255.0).std()
    torch.testing.assert_close(data.x_test[0, 0], torch.from_numpy(((test[0] / 255.0 - mean) / std).astype(np.float32)))
    assert float(data.lower[0]) == pytest.approx(-mean / std, rel=1e-5)
    assert float(data.upper[0]) == pytest.approx((1 - mean) / std, rel=1e-5)


def test_bad_idx_file(tmp_path):
    path = tmp_path / "bad"
    path.write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x05abc")
    with pytest.raises(ValueError, match="header says"):
        read_idx(path)
    path.write_bytes(b"PK\x03\x04")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(path)


def test_cifar_binary(tmp_path):
    rng = np.random.default_rng(1)
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    images = {}
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        labels = rng.integers(0, 10, 4, dtype=np.uint8)
        pixels = rng.integers(0, 256, (4, 3072), dtype=np.uint8)
        np.concatenate([labels[:, None], pixels], axis=1).tofile(folder / name)
        images[name] = (pixels.reshape(4, 3, 32, 32), labels)
    x, y = read_cifar_binary(folder / "test_batch.bin")
    np.testing.assert_array_equal(x, images["test_batch.bin"][0])
    np.testing.assert_array_equal(y, images["test_batch.bin"][1])
    data = load_dataset("cifar10", tmp_path)
    assert data.x_train.shape == (20, 3, 32, 32) and data.lower.shape == (3,)
    # CIFAR-100: two label bytes, the fine label is used
    folder100 = tmp_path / "cifar-100-binary"
    folder100.mkdir()
    for name in ("train.bin", "test.bin"):
        np.concatenate(
            [np.array([[3, 77]] * 2, dtype=np.uint8), rng.integers(0, 256, (2, 3072), dtype=np.uint8)], axis=1
        ).tofile(folder100 / name)
    assert load_dataset("cifar100", tmp_path).y_train.tolist() == [77, 77]


def test_missing_data_says_where_and_how(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"looked for its IDX files .* in {tmp_path}/mnist"):
        load_dataset("mnist", tmp_path)
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-bin/data_batch_1.bin .*download=True"):
        load_dataset("cifar10", tmp_path)
    with pytest.raises(ValueError, match="unknown data set 'imagenet'"):
        load_dataset("imagenet")


@pytest.mark.parametrize("name", ["digits", "mnist5k", "mnist1d"])
def test_offline_sets(name):
    data = load_dataset(name)
    assert data.num_classes == 10
    assert len(data.x_train) > len(data.x_test) > 0
    assert abs(float(data.x_train.mean())) < 1e-3  # standardised
    assert (data.x_train.amin() >= data.lower.min() - 1e-4) and (data.x_train.amax() <= data.upper.max() + 1e-4)
    again = load_dataset(name)
    assert torch.equal(data.x_train, again.x_train)  # deterministic


def test_fashion_mnist_from_debian_package():
    from layerscope.data.datasets import FASHION_SYSTEM_DIR

    if not FASHION_SYSTEM_DIR.exists():
        pytest.skip("Debian package dataset-fashion-mnist not installed")
    data = load_dataset("fashion_mnist", "/nonexistent")
    assert data.x_train.shape == (60000, 1, 28, 28) and data.x_test.shape == (10000, 1, 28, 28)


def test_label_noise_subset_and_probes():
    data = load_dataset("digits")
    noisy = with_label_noise(data, 0.5, seed=3)
    changed = (noisy.y_train != data.y_train).float().mean().item()
    assert 0.5 * 0.9 - 0.05 < changed < 0.5 * 0.9 + 0.05  # 50% redrawn, 9 in 10 of those change
    assert torch.equal(noisy.y_test, data.y_test)
    random_labels = with_label_noise(data, 1.0, seed=3)
    agreement = (random_labels.y_train == data.y_train).float().mean().item()
    assert agreement == pytest.approx(0.1, abs=0.03)
    sub = train_subset(data, 100, seed=1)
    assert len(sub.y_train) == 100 and torch.equal(sub.x_train, train_subset(data, 100, seed=1).x_train)
    p = probe_indices(1000, 50, seed=2)
    assert torch.equal(p, probe_indices(1000, 50, seed=2)) and len(set(p.tolist())) == 50
    assert len(probe_indices(20, 50)) == 20
    with pytest.raises(ValueError, match="label noise fraction must lie in"):
        with_label_noise(data, 1.5)
    assert set(DATASETS) >= {"digits", "mnist5k", "mnist1d", "fashion_mnist", "mnist", "cifar10", "cifar100"}


def _cifar_python_folder(root, n=20):
    import pickle

    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            b"batch_label": name.encode(),
            b"labels": [int(v) for v in rng.integers(0, 10, n)],
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"filenames": [f"{i}.png".encode() for i in range(n)],
        }
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
    return folder


def test_cifar10_python_batches_read_without_running_code(tmp_path):
    import pickle

    from layerscope.data.datasets import load_dataset, read_cifar_python

    folder = _cifar_python_folder(tmp_path)
    with open(folder / "data_batch_1", "rb") as f:
        raw = pickle.load(f, encoding="bytes")
    x, y = read_cifar_python(folder / "data_batch_1")
    assert x.shape == (20, 3, 32, 32) and np.array_equal(x.reshape(20, -1), raw[b"data"])
    assert y.tolist() == raw[b"labels"]
    data = load_dataset("cifar10", tmp_path)
    assert data.x_train.shape == (100, 3, 32, 32) and data.x_test.shape == (20, 3, 32, 32)

    class Exploit:
        def __reduce__(self):
            return (os.system, ("echo owned > " + str(tmp_path / "owned"),))

    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"data": Exploit(), b"labels": [1]}, f)
    with pytest.raises(ValueError, match="refused to load .*system"):
        read_cifar_python(folder / "test_batch")
    assert not (tmp_path / "owned").exists()


def test_augmentation_crops_and_flips_reproducibly():
    from layerscope.train.loop import augment

    x = torch.arange(4 * 3 * 8 * 8, dtype=torch.float32).reshape(4, 3, 8, 8) + 1
    a = augment(x, ["crop", "flip"], torch.Generator().manual_seed(5))
    b = augment(x, ["crop", "flip"], torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and a.shape == x.shape
    flipped = augment(x, ["flip"], torch.Generator().manual_seed(1))
    for i in range(4):  # each image is itself or its mirror image
        assert torch.equal(flipped[i], x[i]) or torch.equal(flipped[i], x[i].flip(-1))
    cropped = augment(x, ["crop"], torch.Generator().manual_seed(2))
    for i in range(4):  # a window of the zero-padded image: its non-zero pixels are a shifted block of the original
        nz = cropped[i, 0][cropped[i, 0] != 0]
        assert len(nz) >= 16 and set(nz.tolist()) <= set(x[i, 0].flatten().tolist())
    with pytest.raises(ValueError, match="needs images"):
        augment(torch.zeros(4, 10), ["flip"], torch.Generator())
