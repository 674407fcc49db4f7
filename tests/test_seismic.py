"""The synthetic seismic facies generator: label geometry, facies order, physics, determinism, sections."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import forgetting.data as fd
from forgetting.data.seismic import (
    F3_CLASSES,
    PAD_LABEL,
    TEST_GEOLOGY,
    TRAIN_GEOLOGY,
    Geology,
    amplitude_to_uint8,
    make_seismic_volume,
    ricker_wavelet,
    sections_from_volume,
    synthetic_seismic,
)
from forgetting.exceptions import ConfigError

UNFAULTED = dataclasses.replace(TRAIN_GEOLOGY, n_faults=0)


def _decreases_per_column(labels: np.ndarray) -> np.ndarray:
    """int ``[IL, XL]``: how often the facies id goes down with depth in each column."""
    return (np.diff(labels.astype(np.int16), axis=2) < 0).sum(axis=2)


@pytest.mark.parametrize("seed", [0, 3])
def test_unfaulted_columns_hold_every_facies_in_order(seed: int) -> None:
    vol = make_seismic_volume(12, 10, 64, seed=seed, geology=UNFAULTED)
    labels = vol.labels
    assert labels.shape == (12, 10, 64) and labels.dtype == np.uint8
    assert _decreases_per_column(labels).max() == 0  # facies ids never go back up with depth
    assert np.all(labels[:, :, 0] == 0)  # upper North Sea at the top
    assert np.all(labels[:, :, -1] == 5)  # zechstein at the bottom
    present = np.stack([(labels == k).any(axis=2) for k in range(6)])
    assert present.all()  # every column holds all six facies
    # the labels are exactly the horizons: facies k starts at horizon k (in samples, before faulting)
    z = np.arange(64)[None, None, :]
    expected = (z[None] >= vol.horizons[:, :, :, None]).sum(axis=0)
    assert np.array_equal(labels, expected)
    thickness = np.diff(vol.horizons, axis=0)
    assert thickness.min() >= UNFAULTED.min_thickness - 1e-4


def test_faults_offset_the_layers() -> None:
    vol = make_seismic_volume(24, 24, 64, seed=1, geology=dataclasses.replace(TRAIN_GEOLOGY, n_faults=2))
    unfaulted = make_seismic_volume(
        24, 24, 64, seed=1, geology=dataclasses.replace(TRAIN_GEOLOGY, n_faults=0)
    )
    assert len(vol.faults) == 2
    # a normal-fault throw moves labels down on the hanging wall: the label volumes differ, and a column
    # crossing a dipping fault plane can repeat facies, but at most once per fault
    assert (vol.labels != unfaulted.labels).mean() > 0.01
    assert _decreases_per_column(vol.labels).max() <= 2
    assert np.all(vol.labels[:, :, 0] == 0)


def test_thin_facies_are_under_represented() -> None:
    vol = make_seismic_volume(32, 32, 96, seed=0)
    share = np.bincount(vol.labels.reshape(-1), minlength=6) / vol.labels.size
    assert share[3] < 0.12 and share[4] < 0.07  # chalk and scruff are thin, as in F3
    assert share[4] < share[3] < min(share[0], share[1], share[2])


def test_reflections_come_from_impedance_contrasts() -> None:
    quiet = dataclasses.replace(UNFAULTED, noise=0.0)
    vol = make_seismic_volume(10, 10, 96, seed=2, geology=quiet)
    # the hardest contrasts, the tops of the chalk (impedance 5.3 -> 8.0) and of the zechstein (6.2 -> 9.5),
    # are the brightest reflectors: amplitudes within 2 samples of them are far above the volume's average
    z = np.arange(96)[None, None, :]
    near_tops = (np.abs(z - vol.horizons[2][..., None]) <= 2) | (np.abs(z - vol.horizons[4][..., None]) <= 2)
    assert np.abs(vol.amplitude[near_tops]).mean() > 2.0 * np.abs(vol.amplitude).mean()
    # zechstein salt is transparent: far weaker amplitudes inside it than in the layered North Sea groups
    inside_salt = (vol.labels == 5) & (z > vol.horizons[4][..., None] + 8)
    inside_ns = (vol.labels == 2) & (z > vol.horizons[1][..., None] + 8)
    assert np.abs(vol.amplitude[inside_salt]).mean() < 0.5 * np.abs(vol.amplitude[inside_ns]).mean()


def test_ricker_wavelet() -> None:
    w = ricker_wavelet(0.1)
    assert w.shape == (31,) and w[15] == pytest.approx(1.0) and w.argmax() == 15
    assert np.allclose(w, w[::-1])
    assert abs(w.sum()) < 0.05 * np.abs(w).sum()  # zero mean: no DC component


def test_same_seed_same_volume_other_seed_other_volume() -> None:
    a = make_seismic_volume(8, 9, 40, seed=7)
    b = make_seismic_volume(8, 9, 40, seed=7)
    c = make_seismic_volume(8, 9, 40, seed=8)
    assert np.array_equal(a.amplitude, b.amplitude) and np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.amplitude, c.amplitude)
    d1 = synthetic_seismic(8, 8, 32, seed=5)
    d2 = synthetic_seismic(8, 8, 32, seed=5)
    for split in ("train", "test"):
        assert torch.equal(d1.splits[split].images, d2.splits[split].images)
        assert torch.equal(d1.splits[split].targets, d2.splits[split].targets)


def test_test_volume_is_a_geological_shift() -> None:
    for seed in range(3):
        train = make_seismic_volume(24, 24, 64, seed=seed, geology=TRAIN_GEOLOGY)
        test = make_seismic_volume(24, 24, 64, seed=seed, geology=TEST_GEOLOGY)
        assert len(test.faults) > len(train.faults)
        # more structural relief (folds, dome) on the deepest horizon
        assert np.ptp(test.horizons[4]) > np.ptp(train.horizons[4])
    ds = synthetic_seismic(16, 16, 48, seed=0)
    same = synthetic_seismic(16, 16, 48, seed=0, test_geology="same")
    assert torch.equal(ds.train.images, same.train.images)  # the train volume does not depend on it
    assert not torch.equal(ds.test.targets, same.test.targets)
    assert ds.meta["geology"]["train"] != ds.meta["geology"]["test"]


def test_sections_are_transposed_slices() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (5, 7, 11), dtype=np.uint8)
    labels = rng.integers(0, 6, (5, 7, 11))
    images, masks, names = sections_from_volume(image, labels, orientation="both")
    assert images.shape == (12, 1, 11, 7) and masks.shape == (12, 11, 7) and masks.dtype == np.int64
    assert names[0] == "inline 0" and names[5] == "crossline 0"
    assert np.array_equal(images[2, 0], image[2].T)  # inline 2: depth x crosslines
    assert np.array_equal(masks[5 + 3, :, :5], labels[:, 3].T)  # crossline 3: depth x inlines, padded
    assert np.all(masks[5:, :, 5:] == PAD_LABEL) and np.all(images[5:, 0, :, 5:] == 128)
    assert np.all(masks[:5] != PAD_LABEL)
    images, masks, names = sections_from_volume(image, labels, orientation="inline", stride=2)
    assert names == ["inline 0", "inline 2", "inline 4"] and images.shape == (3, 1, 11, 7)
    with pytest.raises(ConfigError, match="orientation"):
        sections_from_volume(image, labels, orientation="timeslice")  # type: ignore[arg-type]


def test_amplitude_mapping_keeps_the_sign() -> None:
    u8 = amplitude_to_uint8(np.array([-2.0, -1.0, 0.0, 0.5, 1.0, 3.0]), clip=1.0)
    assert u8.tolist() == [0, 0, 128, 191, 255, 255]


def test_registered_dataset() -> None:
    ds = fd.load_dataset("seismic-synthetic", seed=1, inlines=8, crosslines=8, depth=32)
    assert ds.task == "segmentation" and ds.classes == F3_CLASSES
    assert tuple(ds.train.images.shape) == (16, 1, 32, 8) and ds.train.images.dtype == torch.uint8
    assert tuple(ds.test.targets.shape) == (16, 32, 8) and ds.test.targets.dtype == torch.int64
    assert ds.meta["ignore_index"] == PAD_LABEL and len(ds.meta["section_names"]["test"]) == 16
    assert int(ds.train.targets.max()) == 5
    with pytest.raises(ConfigError, match="orientation"):
        fd.load_dataset("seismic-synthetic", orientation="diagonal")
    with pytest.raises(ConfigError, match="allowed options"):
        fd.load_dataset("seismic-synthetic", size=3)
    with pytest.raises(ConfigError, match="thickness"):
        Geology(thickness=(0.3, 0.3, 0.3, 0.1, 0.1))
