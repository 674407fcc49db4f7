"""Format loaders, on small files written here in each real format."""

from __future__ import annotations

import csv
import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

import forgetting.data as fd
from forgetting.data.formats import ArrayUnpickler, load_array_pickle, parse_idx
from forgetting.data.user_formats import CIFAR10_CLASSES, STL10_TO_CIFAR10
from forgetting.exceptions import ConfigError, DatasetFormatError, DatasetNotFoundError


@pytest.fixture(autouse=True)
def _no_data_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FORGETTING_DATA", raising=False)


# -------------------------------------------------------------------------------------------------- IDX


def _idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, dtype=">i4").tobytes()
    return header + array.astype(np.uint8).tobytes()


def _write_idx_dir(directory: Path, n_train: int = 12, n_test: int = 6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    directory.mkdir(parents=True, exist_ok=True)
    train_x = rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8)
    train_y = np.arange(n_train, dtype=np.uint8) % 10
    test_x = rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8)
    test_y = np.arange(n_test, dtype=np.uint8) % 10
    for name, array in (
        ("train-images-idx3-ubyte.gz", train_x),
        ("train-labels-idx1-ubyte.gz", train_y),
        ("t10k-images-idx3-ubyte.gz", test_x),
        ("t10k-labels-idx1-ubyte.gz", test_y),
    ):
        (directory / name).write_bytes(gzip.compress(_idx_bytes(array)))
    return train_x, train_y


def test_idx_loader_from_root(tmp_path: Path) -> None:
    train_x, train_y = _write_idx_dir(tmp_path / "fashion")
    fashion = fd.load_dataset("fashion-mnist", root=tmp_path / "fashion")
    assert tuple(fashion.train.images.shape) == (12, 1, 28, 28)
    assert torch.equal(fashion.train.images[:, 0], torch.from_numpy(train_x))
    assert torch.equal(fashion.train.labels, torch.from_numpy(train_y.astype(np.int64)))
    assert len(fashion.test) == 6 and fashion.source == str(tmp_path / "fashion")


def test_idx_uncompressed_files_and_subfolder(tmp_path: Path) -> None:
    _write_idx_dir(tmp_path / "mnist")
    for path in (tmp_path / "mnist").iterdir():
        path.with_suffix("").write_bytes(gzip.decompress(path.read_bytes()))
        path.unlink()
    assert len(fd.load_dataset("mnist", root=tmp_path).train) == 12  # found in root/mnist


def test_malformed_idx_header_names_file_and_field(tmp_path: Path) -> None:
    _write_idx_dir(tmp_path)
    bad = tmp_path / "train-images-idx3-ubyte.gz"
    data = bytearray(gzip.decompress(bad.read_bytes()))
    data[0] = 0x12
    bad.write_bytes(gzip.compress(bytes(data)))
    with pytest.raises(DatasetFormatError) as info:
        fd.load_dataset("fashion-mnist", root=tmp_path)
    assert "train-images-idx3-ubyte.gz" in str(info.value) and "magic number" in str(info.value)


def test_idx_size_and_type_errors() -> None:
    good = _idx_bytes(np.zeros((2, 3, 3), dtype=np.uint8))
    assert parse_idx(good).shape == (2, 3, 3)
    with pytest.raises(DatasetFormatError, match="data size"):
        parse_idx(good[:-1], source="x.gz")
    with pytest.raises(DatasetFormatError, match="type code"):
        parse_idx(bytes([0, 0, 0x07, 1]) + np.array([1], dtype=">i4").tobytes() + b"\0", source="x")
    with pytest.raises(DatasetFormatError, match="declares 1 dimensions, expected 3"):
        parse_idx(_idx_bytes(np.zeros(4, dtype=np.uint8)), expected_ndim=3)
    big_endian = (
        bytes([0, 0, 0x0C, 1]) + np.array([2], dtype=">i4").tobytes() + np.array([1, 258], ">i4").tobytes()
    )
    assert parse_idx(big_endian).tolist() == [1, 258]


def test_idx_label_count_mismatch(tmp_path: Path) -> None:
    _write_idx_dir(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(np.zeros(5, np.uint8))))
    with pytest.raises(DatasetFormatError, match=r"6 images but .* 5 labels"):
        fd.load_dataset("fashion-mnist", root=tmp_path)


# ---------------------------------------------------------------------------------------------- CIFAR-10


def _cifar_images(n: int, offset: int) -> np.ndarray:
    rng = np.random.default_rng(offset)
    return rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)


def _write_cifar(directory: Path, *, protocol: int = 2, per_batch: int = 4) -> dict[str, np.ndarray]:
    directory.mkdir(parents=True, exist_ok=True)
    written: dict[str, np.ndarray] = {}
    for i, name in enumerate([*(f"data_batch_{k}" for k in range(1, 6)), "test_batch"]):
        images = _cifar_images(per_batch, i)
        written[name] = images
        batch = {
            b"batch_label": f"batch {i}".encode(),
            b"labels": [(i + j) % 10 for j in range(per_batch)],
            # the official layout: row = 1024 red, 1024 green, 1024 blue values, each row-major 32x32
            b"data": images.reshape(per_batch, 3072),
            b"filenames": [f"img_{i}_{j}.png".encode() for j in range(per_batch)],
        }
        with (directory / name).open("wb") as handle:
            pickle.dump(batch, handle, protocol=protocol)
    meta = {b"label_names": [c.encode() for c in CIFAR10_CLASSES], b"num_cases_per_batch": per_batch}
    with (directory / "batches.meta").open("wb") as handle:
        pickle.dump(meta, handle, protocol=protocol)
    return written


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar10_batches(tmp_path: Path, protocol: int) -> None:
    written = _write_cifar(tmp_path / "cifar-10-batches-py", protocol=protocol)
    cifar = fd.load_dataset("cifar10", root=tmp_path)  # finds the standard sub-folder
    assert cifar.classes == CIFAR10_CLASSES
    assert tuple(cifar.train.images.shape) == (20, 3, 32, 32) and len(cifar.test) == 4
    assert torch.equal(cifar.train.images[:4], torch.from_numpy(written["data_batch_1"]))
    assert torch.equal(cifar.test.images, torch.from_numpy(written["test_batch"]))
    assert cifar.train.labels[:6].tolist() == [0, 1, 2, 3, 1, 2]


class _Exploit:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (self.command,))


def test_cifar10_refuses_malicious_pickle(tmp_path: Path) -> None:
    _write_cifar(tmp_path)
    marker = tmp_path / "pwned"
    with (tmp_path / "data_batch_3").open("wb") as handle:
        pickle.dump({b"data": _Exploit(f"touch {marker}"), b"labels": [0]}, handle, protocol=2)
    with pytest.raises(DatasetFormatError) as info:
        fd.load_dataset("cifar10", root=tmp_path)
    assert "data_batch_3" in str(info.value) and "system" in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize(
    "payload",
    [
        b"cbuiltins\neval\n(S'1+1'\ntR.",  # protocol 0 GLOBAL builtins.eval
        b"\x80\x04\x8c\x05numpy\x8c\x10ndarray.__init__\x93.",  # dotted name smuggling
        b"cnumpy\nload\n(S'x'\ntR.",  # numpy, but not an allowed function
    ],
)
def test_array_unpickler_refuses_globals(tmp_path: Path, payload: bytes) -> None:
    path = tmp_path / "evil.pkl"
    path.write_bytes(payload)
    with pytest.raises(DatasetFormatError, match="refusing to unpickle"):
        load_array_pickle(path)


def test_array_unpickler_rejects_object_arrays_and_garbage(tmp_path: Path) -> None:
    path = tmp_path / "obj.pkl"
    path.write_bytes(pickle.dumps(np.array([1, "a"], dtype=object), protocol=2))
    with pytest.raises(DatasetFormatError):
        load_array_pickle(path)
    path.write_bytes(b"not a pickle at all")
    with pytest.raises(DatasetFormatError, match="not a valid pickle"):
        load_array_pickle(path)
    assert issubclass(ArrayUnpickler, pickle.Unpickler)


def test_cifar10_bad_field(tmp_path: Path) -> None:
    _write_cifar(tmp_path)
    with (tmp_path / "test_batch").open("wb") as handle:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, handle)
    with pytest.raises(DatasetFormatError, match=r"test_batch.*b'data'.*\[N, 3072\]"):
        fd.load_dataset("cifar10", root=tmp_path)


def test_cifar10_missing_lists_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORGETTING_DATA", str(tmp_path / "env"))
    (tmp_path / "given").mkdir()
    (tmp_path / "given" / "data_batch_1").write_bytes(b"")
    with pytest.raises(DatasetNotFoundError) as info:
        fd.load_dataset("cifar10", root=tmp_path / "given")
    message = str(info.value)
    assert str(tmp_path / "given") in message and "missing data_batch_2" in message
    assert str(tmp_path / "given" / "cifar-10-batches-py") in message
    assert str(tmp_path / "env" / "cifar10") in message
    assert "cs.toronto.edu" in message


# -------------------------------------------------------------------------------------------- CIFAR-10-C


def _write_cifar10_c(directory: Path, per: int = 20) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    # pixel value = 10 * severity, so a slice shows which severity it came from
    images = np.repeat(np.arange(1, 6, dtype=np.uint8) * 10, per)[:, None, None, None]
    np.save(directory / "gaussian_noise.npy", np.broadcast_to(images, (5 * per, 32, 32, 3)).copy())
    np.save(directory / "labels.npy", np.tile(np.arange(per, dtype=np.uint8) % 10, 5))


@pytest.mark.parametrize("severity", [1, 3, 5])
def test_cifar10_c_severity_slicing(tmp_path: Path, severity: int) -> None:
    _write_cifar10_c(tmp_path / "CIFAR-10-C")
    data = fd.load_dataset("cifar10-c", root=tmp_path, corruption="gaussian_noise", severity=severity)
    whole = data.split("all")
    assert tuple(whole.images.shape) == (20, 3, 32, 32)
    assert torch.all(whole.images == 10 * severity)
    assert torch.equal(torch.bincount(whole.labels), torch.full((10,), 2))
    assert data.meta["severity"] == severity and data.classes == CIFAR10_CLASSES


def test_cifar10_c_errors(tmp_path: Path) -> None:
    _write_cifar10_c(tmp_path)
    with pytest.raises(ConfigError, match="severity"):
        fd.load_dataset("cifar10-c", root=tmp_path, severity=6)
    with pytest.raises(DatasetNotFoundError, match=r"present in .*: gaussian_noise"):
        fd.load_dataset("cifar10-c", root=tmp_path, corruption="fog")
    with pytest.raises(ConfigError, match="corruption"):
        fd.load_dataset("cifar10-c", root=tmp_path, corruption="../labels")


def test_cifar10_c_eval_set(tmp_path: Path) -> None:
    _write_cifar10_c(tmp_path)
    test = fd.Split(torch.zeros(3, 3, 32, 32, dtype=torch.uint8), torch.zeros(3, dtype=torch.int64))
    real = fd.build_eval_set("cifar10-c/gaussian_noise-2", test, seed=0, root=tmp_path)
    assert len(real) == 20 and torch.all(real.images == 20)


# ------------------------------------------------------------------------------------------------ STL-10


def _write_stl(directory: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    written = {}
    for prefix, labels in (("train", np.arange(1, 11)), ("test", np.array([8, 3, 3, 1, 10, 8]))):
        images = rng.integers(0, 256, (len(labels), 3, 96, 96), dtype=np.uint8)  # (C, H, W)
        # the binary is column-major per channel: (C, W, H) in C order
        (directory / f"{prefix}_X.bin").write_bytes(images.transpose(0, 1, 3, 2).tobytes())
        (directory / f"{prefix}_y.bin").write_bytes(labels.astype(np.uint8).tobytes())
        written[prefix] = (images, labels)
    return written


def test_stl10_mapping_and_layout(tmp_path: Path) -> None:
    written = _write_stl(tmp_path / "stl10_binary")
    stl = fd.load_dataset("stl10", root=tmp_path, resize=False)
    assert stl.classes == CIFAR10_CLASSES
    # train labels 1..10 = airplane, bird, car, cat, deer, dog, horse, monkey, ship, truck
    assert stl.train.labels.tolist() == [0, 2, 1, 3, 4, 5, 7, 8, 9]  # monkey dropped, car -> automobile
    assert 6 not in stl.train.labels.tolist()  # no frogs in STL-10
    assert stl.test.labels.tolist() == [1, 1, 0, 9]
    images, labels = written["train"]
    keep = labels != 8
    assert torch.equal(stl.train.images, torch.from_numpy(images[keep]))
    assert STL10_TO_CIFAR10[3] == CIFAR10_CLASSES.index("automobile")


def test_stl10_resize_is_area_average(tmp_path: Path) -> None:
    written = _write_stl(tmp_path)
    stl = fd.load_dataset("stl10", root=tmp_path)
    assert tuple(stl.train.images.shape) == (9, 3, 32, 32)
    images, labels = written["train"]
    expected = torch.nn.functional.avg_pool2d(torch.from_numpy(images[labels != 8]).float(), 3)
    assert (stl.train.images.float() - expected).abs().max() <= 0.5


def test_stl10_bad_size(tmp_path: Path) -> None:
    _write_stl(tmp_path)
    (tmp_path / "test_X.bin").write_bytes(b"\0" * 1000)
    with pytest.raises(DatasetFormatError, match=r"test_X\.bin.*multiple"):
        fd.load_dataset("stl10", root=tmp_path)


# ------------------------------------------------------------------------------------------------ arrays


def test_arrays_npz_float_nhwc_string_labels(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = rng.random((40, 16, 16, 3)).astype(np.float32)
    labels = np.array(["cat", "dog", "emu", "ant"] * 10)
    np.savez(tmp_path / "data.npz", images=images, labels=labels)
    data = fd.load_dataset("arrays", root=tmp_path / "data.npz", seed=1)
    assert data.classes == ("ant", "cat", "dog", "emu")
    whole = data.split("all")
    assert tuple(whole.images.shape) == (40, 3, 16, 16) and whole.images.dtype == torch.uint8
    assert torch.equal(torch.bincount(data.test.labels), torch.full((4,), 2))
    first = data.train.images[0].permute(1, 2, 0).float() / 255
    matches = (torch.from_numpy(images) - first).abs().amax(dim=(1, 2, 3)) <= 0.5 / 255 + 1e-6
    assert matches.any()  # the first training image is one of the inputs, scaled by 255 and rounded
    assert "scaled by 255" in str(data.meta["intensity"])


def test_arrays_directory_masks_segmentation(tmp_path: Path) -> None:
    images = np.zeros((10, 1, 8, 8), dtype=np.uint8)
    images[:, 0, 0, 0] = np.arange(10) * 20  # tells which input an output image is
    masks = np.broadcast_to((np.arange(10) % 3)[:, None, None], (10, 8, 8)).astype(np.int32)
    np.save(tmp_path / "images.npy", images)
    np.save(tmp_path / "masks.npy", masks)
    data = fd.load_dataset("arrays", root=tmp_path, test_fraction=0.3)
    assert data.task == "segmentation" and data.classes == ("0", "1", "2")
    assert len(data.train) == 7 and len(data.test) == 3
    assert data.train.targets.shape[1:] == (8, 8) and data.train.targets.dtype == torch.int64
    whole = data.split("all")
    order = torch.argsort(whole.images[:, 0, 0, 0].long())
    assert torch.equal(whole.images[order], torch.from_numpy(images))
    assert torch.equal(whole.targets[order], torch.from_numpy(masks.astype(np.int64)))


def test_arrays_given_splits_nhw_and_classes_option(tmp_path: Path) -> None:
    np.savez(
        tmp_path / "d.npz",
        train_images=np.zeros((6, 5, 5), np.uint8),
        train_labels=np.array([0, 1, 2, 0, 1, 2]),
        test_images=np.full((3, 5, 5), 7, np.uint8),
        test_labels=np.array([2, 1, 0]),
        val_images=np.ones((2, 5, 5), np.uint8),
        val_labels=np.array([0, 0]),
    )
    data = fd.load_dataset("arrays", root=tmp_path, classes="a,b,c")
    assert set(data.splits) == {"train", "test", "val"}
    assert data.classes == ("a", "b", "c")
    assert tuple(data.test.images.shape) == (3, 1, 5, 5) and torch.all(data.test.images == 7)


def test_arrays_errors(tmp_path: Path) -> None:
    np.save(tmp_path / "images.npy", np.zeros((4, 2, 2, 2), np.uint8))
    np.save(tmp_path / "labels.npy", np.zeros(4, np.int64))
    with pytest.raises(DatasetFormatError, match="no channel axis"):
        fd.load_dataset("arrays", root=tmp_path)
    np.save(tmp_path / "images.npy", np.zeros((4, 3, 2, 2), np.uint8))
    np.save(tmp_path / "labels.npy", np.zeros(5, np.int64))
    with pytest.raises(DatasetFormatError, match=r"labels\.npy: shape"):
        fd.load_dataset("arrays", root=tmp_path)
    with pytest.raises(ConfigError, match="layout"):
        fd.load_dataset("arrays", root=tmp_path, layout="CHW")
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        fd.load_dataset("arrays", root=tmp_path / "nope.npz")
    with pytest.raises(DatasetNotFoundError, match="needs a path"):
        fd.load_dataset("arrays")


# ------------------------------------------------------------------------------------------ image-folder


def _write_png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(array).save(path)


def test_image_folder_with_csv(tmp_path: Path) -> None:
    rows = []
    for i in range(12):
        label = ["zebra", "apple", "moon"][i % 3]
        _write_png(tmp_path / f"{i}.png", np.full((10, 12), i * 10, np.uint8))
        rows.append({"filename": f"{i}.png", "label": label})
    with (tmp_path / "labels.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["filename", "label"])
        writer.writeheader()
        writer.writerows(rows)
    data = fd.load_dataset("image-folder", root=tmp_path, test_fraction=0.25)
    assert data.classes == ("apple", "moon", "zebra")
    whole = data.split("all")
    assert tuple(whole.images.shape) == (12, 1, 10, 12)
    assert torch.equal(torch.bincount(data.test.labels), torch.ones(3, dtype=torch.int64))
    # each image's gray value tells its row, and its label must match that row's label
    index = whole.images[:, 0, 0, 0].long() // 10
    assert torch.equal(whole.labels, torch.tensor([[2, 0, 1][i % 3] for i in index.tolist()]))


def test_image_folder_rgb_split_column_and_resize(tmp_path: Path) -> None:
    with (tmp_path / "labels.csv").open("w", newline="") as handle:
        handle.write("filename,label,split\n")
        for i, split in enumerate(["train", "train", "test", "test"]):
            shape = (8, 8, 3) if i % 2 else (16, 16)  # mixed RGB / gray and sizes
            _write_png(tmp_path / f"im{i}.png", np.full(shape, 100, np.uint8))
            handle.write(f"im{i}.png,{'ab'[i % 2]},{split}\n")
    with pytest.raises(DatasetFormatError, match="size=\\[height, width\\]"):
        fd.load_dataset("image-folder", root=tmp_path)
    data = fd.load_dataset("image-folder", root=tmp_path, size=8)
    assert tuple(data.train.images.shape) == (2, 3, 8, 8)
    assert data.test.labels.tolist() == [0, 1]


def test_image_folder_errors(tmp_path: Path) -> None:
    (tmp_path / "labels.csv").write_text("file,class\nx.png,a\n")
    with pytest.raises(DatasetFormatError, match="'filename' and 'label'"):
        fd.load_dataset("image-folder", root=tmp_path)
    (tmp_path / "labels.csv").write_text("filename,label\nmissing.png,a\n")
    with pytest.raises(DatasetNotFoundError, match=r"missing\.png"):
        fd.load_dataset("image-folder", root=tmp_path)
