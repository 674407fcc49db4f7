"""The F3 facies benchmark loader, on small volumes written in the benchmark's own file layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import forgetting.data as fd
from forgetting.data.seismic import F3_CLASSES, PAD_LABEL, amplitude_to_uint8
from forgetting.exceptions import ConfigError, DatasetFormatError, DatasetNotFoundError

SHAPES = {"train": (6, 10, 16), "test1": (3, 10, 16), "test2": (7, 4, 16)}


@pytest.fixture(autouse=True)
def _no_data_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FORGETTING_DATA", raising=False)


def _write_f3(root: Path, volumes: tuple[str, ...] = ("train", "test1", "test2")) -> dict[str, np.ndarray]:
    """The benchmark layout: data/train/train_*.npy, data/test_once/test{1,2}_*.npy (float seismic)."""
    rng = np.random.default_rng(0)
    labels = {}
    for volume in volumes:
        shape = SHAPES[volume]
        folder = root / "data" / ("train" if volume == "train" else "test_once")
        folder.mkdir(parents=True, exist_ok=True)
        seismic = rng.normal(0.0, 0.3, shape).astype(np.float32)
        # facies stacked with depth, as in F3; train labels as integral floats, the others as uint8
        depth_facies = np.minimum(np.arange(shape[2]) * 6 // shape[2], 5)
        lab = np.broadcast_to(depth_facies, shape).copy()
        lab[0, 0, :3] = 5  # one odd column so that transposition errors show
        np.save(folder / f"{volume}_seismic.npy", seismic)
        np.save(folder / f"{volume}_labels.npy", lab.astype(np.float64 if volume == "train" else np.uint8))
        labels[volume] = lab
    return labels


def test_loads_the_benchmark_layout(tmp_path: Path) -> None:
    labels = _write_f3(tmp_path)
    ds = fd.load_dataset("f3", root=tmp_path)
    assert ds.task == "segmentation" and ds.classes == F3_CLASSES and ds.name == "f3"
    assert set(ds.splits) == {"train", "test", "test1", "test2"}
    assert ds.splits["test"] is ds.splits["test1"]
    train = ds.train
    assert tuple(train.images.shape) == (6, 1, 16, 10) and train.images.dtype == torch.uint8
    assert tuple(train.targets.shape) == (6, 16, 10) and train.targets.dtype == torch.int64
    # inline section i is volume[i] transposed: depth is the image height
    for i in range(6):
        assert np.array_equal(train.targets[i].numpy(), labels["train"][i].T)
    assert tuple(ds.splits["test2"].images.shape) == (7, 1, 16, 4)
    assert ds.meta["section_names"]["train"][:2] == ["inline 0", "inline 1"]
    assert ds.meta["ignore_index"] == PAD_LABEL and ds.meta["volume_shapes"]["test2"] == SHAPES["test2"]
    # one amplitude scale (the train volume's clip) for every volume; zero amplitude maps to 128
    clip = ds.meta["amplitude_clip"]
    for volume, split in (("train", train), ("test2", ds.splits["test2"])):
        folder = "train" if volume == "train" else "test_once"
        seismic = np.load(tmp_path / "data" / folder / f"{volume}_seismic.npy")
        assert np.array_equal(split.images[1, 0].numpy(), amplitude_to_uint8(seismic[1].T, clip))


def test_orientation_stride_and_test_volume(tmp_path: Path) -> None:
    labels = _write_f3(tmp_path)
    both = fd.load_dataset("f3", root=tmp_path / "data", orientation="both")
    train = both.train
    assert tuple(train.targets.shape) == (6 + 10, 16, 10)
    crossline3 = train.targets[6 + 3].numpy()
    assert np.array_equal(crossline3[:, :6], labels["train"][:, 3].T)
    assert np.all(crossline3[:, 6:] == PAD_LABEL)  # crossline sections are 6 wide, padded to 10
    assert bool((train.images[6:, 0, :, 6:] == 128).all())
    strided = fd.load_dataset("f3", root=tmp_path, stride=2, test="test2")
    assert len(strided.train) == 3 and strided.meta["section_names"]["train"] == [
        "inline 0",
        "inline 2",
        "inline 4",
    ]
    assert strided.splits["test"] is strided.splits["test2"] and len(strided.test) == 4
    with pytest.raises(ConfigError, match="orientation"):
        fd.load_dataset("f3", root=tmp_path, orientation="depth")
    with pytest.raises(ConfigError, match="'test'"):
        fd.load_dataset("f3", root=tmp_path, test="test3")


def test_test2_is_optional_unless_chosen(tmp_path: Path) -> None:
    _write_f3(tmp_path, ("train", "test1"))
    ds = fd.load_dataset("f3", root=tmp_path)
    assert set(ds.splits) == {"train", "test", "test1"}
    with pytest.raises(DatasetNotFoundError, match=r"test2_seismic\.npy"):
        fd.load_dataset("f3", root=tmp_path, test="test2")


def test_missing_files_name_every_place_and_how_to_get(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        fd.load_dataset("f3", root=tmp_path)
    message = str(info.value)
    assert "train_seismic.npy" in message and "test1_labels.npy" in message
    assert str(tmp_path) in message and str(tmp_path / "data" / "test_once") in message
    assert "facies_classification_benchmark" in message
    # found through $FORGETTING_DATA/f3 too
    _write_f3(tmp_path / "env" / "f3")
    monkeypatch.setenv("FORGETTING_DATA", str(tmp_path / "env"))
    assert len(fd.load_dataset("f3").train) == 6
    report = {s.name: s for s in fd.dataset_report()}
    assert report["f3"].available


def test_listed_as_needing_a_path() -> None:
    report = {s.name: s for s in fd.dataset_report()}
    assert not report["f3"].available and report["f3"].source == "needs a path"
    assert "train_seismic.npy" in (report["f3"].reason or "")


def _save(root: Path, name: str, array: np.ndarray) -> None:
    folder = root / ("train" if name.startswith("train") else "test_once")
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / name, array)


@pytest.mark.parametrize(
    ("bad_file", "array", "match"),
    [
        ("train_labels.npy", np.zeros((6, 10, 15)), "labels have shape"),
        ("train_seismic.npy", np.zeros((6, 10)), "3-D volume"),
        ("test1_labels.npy", np.full((3, 10, 16), 7), "facies ids 0..5"),
        ("train_labels.npy", np.full((6, 10, 16), 1.5), "integers"),
        ("train_seismic.npy", np.array([{"a": 1}], dtype=object), "not a plain numpy array"),
    ],
)
def test_malformed_files(tmp_path: Path, bad_file: str, array: np.ndarray, match: str) -> None:
    _write_f3(tmp_path)
    _save(tmp_path / "data", bad_file, array)
    with pytest.raises(DatasetFormatError, match=match) as info:
        fd.load_dataset("f3", root=tmp_path)
    assert bad_file in str(info.value)
