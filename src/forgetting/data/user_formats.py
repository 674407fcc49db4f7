"""Loaders for data users already have on disk, in the formats it is distributed in.

* ``cifar10``: the python batches (``data_batch_1..5``, ``test_batch``, ``batches.meta``), read through a
  restricted unpickler that can only rebuild numpy arrays.
* ``cifar10-c``: Hendrycks & Dietterich's ``<corruption>.npy`` (5 severities x 10,000) + ``labels.npy``.
* ``stl10``: the binary release, mapped to CIFAR-10's classes and ids (``monkey`` dropped).
* ``arrays``: ``images.npy`` + ``labels.npy``/``masks.npy`` (or an ``.npz``), optionally per split.
* ``image-folder``: image files plus a ``labels.csv`` with columns ``filename,label[,split]``.

Each looks in ``root`` (and its usual sub-folder), then ``$FORGETTING_DATA/<name>``.
"""

from __future__ import annotations

import csv
import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from forgetting._io import NUMPY_READ_ERRORS, describe_numpy_error
from forgetting.data.dataset import Dataset, Split
from forgetting.data.dataset import Task as DatasetTask
from forgetting.data.formats import (
    DATA_ENV,
    existing_file,
    find_dataset_dir,
    load_array_pickle,
    resize_images,
    to_int64_targets,
    to_uint8_images,
)
from forgetting.data.image_files import open_image, to_8bit
from forgetting.data.registry import register_dataset
from forgetting.data.splits import split_dataset
from forgetting.exceptions import ConfigError, DatasetFormatError, DatasetNotFoundError

logger = logging.getLogger(__name__)

CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"
CIFAR10_TRAIN_FILES: tuple[str, ...] = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_FILE = "test_batch"
CIFAR10_META_FILE = "batches.meta"

CIFAR10C_URL = "https://zenodo.org/record/2535967 (CIFAR-10-C.tar)"
CIFAR10C_CORRUPTIONS: tuple[str, ...] = (
    "brightness",
    "contrast",
    "defocus_blur",
    "elastic_transform",
    "fog",
    "frost",
    "gaussian_blur",
    "gaussian_noise",
    "glass_blur",
    "impulse_noise",
    "jpeg_compression",
    "motion_blur",
    "pixelate",
    "saturate",
    "shot_noise",
    "snow",
    "spatter",
    "speckle_noise",
    "zoom_blur",
)

STL10_URL = "https://cs.stanford.edu/~acoates/stl10/ (stl10_binary.tar.gz)"
STL10_CLASSES: tuple[str, ...] = (
    "airplane",
    "bird",
    "car",
    "cat",
    "deer",
    "dog",
    "horse",
    "monkey",
    "ship",
    "truck",
)
STL10_FILES: tuple[str, ...] = ("train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin")
_STL_AS_CIFAR = {name: name for name in STL10_CLASSES if name in CIFAR10_CLASSES} | {"car": "automobile"}
STL10_TO_CIFAR10: np.ndarray = np.array(
    [-1, *(CIFAR10_CLASSES.index(_STL_AS_CIFAR[c]) if c in _STL_AS_CIFAR else -1 for c in STL10_CLASSES)],
    dtype=np.int64,
)
"""Index with an STL-10 label (1-based) to get the CIFAR-10 id; -1 for ``monkey`` (and the unused 0)."""
STL10_SIZE = 96


def _severity(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or not 1 <= int(value) <= 5:
        raise ConfigError(f"option 'severity' must be an integer 1..5, got {value!r}")
    return int(value)


# ---------------------------------------------------------------------------------------------- cifar10


def _required_file(directory: Path, name: str) -> Path:
    path = existing_file(directory, name)
    if path is None:
        raise DatasetNotFoundError(f"{directory / name} not found")
    return path


def _get(batch: Mapping[Any, Any], key: str) -> Any:
    for candidate in (key.encode(), key):
        if candidate in batch:
            return batch[candidate]
    return None


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    batch = load_array_pickle(path, encoding="bytes")
    if not isinstance(batch, dict):
        raise DatasetFormatError(
            f"{path}: expected a pickled dict with b'data' and b'labels', got {type(batch).__name__}"
        )
    data, labels = _get(batch, "data"), _get(batch, "labels")
    if data is None or labels is None:
        raise DatasetFormatError(
            f"{path}: missing key b'data' or b'labels' (keys: {sorted(map(repr, batch))})"
        )
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        shape = getattr(data, "shape", None)
        raise DatasetFormatError(f"{path}: field b'data' must be a uint8 array [N, 3072], got {shape}")
    labels_array = np.asarray(labels)
    if labels_array.shape != (data.shape[0],) or not np.issubdtype(labels_array.dtype, np.integer):
        raise DatasetFormatError(
            f"{path}: field b'labels' must be {data.shape[0]} integers, "
            f"got {labels_array.dtype} {labels_array.shape}"
        )
    if labels_array.size and (labels_array.min() < 0 or labels_array.max() > 9):
        raise DatasetFormatError(f"{path}: field b'labels' must be in 0..9")
    return data.reshape(-1, 3, 32, 32), labels_array.astype(np.int64)


def _cifar_classes(directory: Path) -> tuple[str, ...]:
    path = existing_file(directory, CIFAR10_META_FILE)
    if path is None:
        return CIFAR10_CLASSES
    meta = load_array_pickle(path, encoding="bytes")
    names = _get(meta, "label_names") if isinstance(meta, dict) else None
    if not isinstance(names, list) or len(names) != 10:
        raise DatasetFormatError(f"{path}: field b'label_names' must be a list of 10 names")
    return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)


@register_dataset(
    "cifar10",
    description="CIFAR-10 python batches from a path you supply; 50k/10k official split",
    needs_root=True,
    expected_files=", ".join((*CIFAR10_TRAIN_FILES, CIFAR10_TEST_FILE, CIFAR10_META_FILE)),
)
def load_cifar10(root: Path | None, seed: int) -> Dataset:
    """CIFAR-10 from the python batches, ``uint8 [N, 3, 32, 32]``, the official 50,000/10,000 split.

    Looked up in ``root``, ``root/cifar-10-batches-py``, ``$FORGETTING_DATA/cifar10``. The pickles are read
    with a restricted unpickler: anything but numpy arrays and plain containers is refused.
    """
    del seed  # official split
    directory = find_dataset_dir(
        "cifar10",
        root,
        (*CIFAR10_TRAIN_FILES, CIFAR10_TEST_FILE),
        subdirs=("cifar-10-batches-py",),
        how_to_get=f"download 'CIFAR-10 python version' from {CIFAR10_URL}, extract it, pass root=<dir>",
    )
    parts = [_read_cifar_batch(_required_file(directory, f)) for f in CIFAR10_TRAIN_FILES]
    test_images, test_labels = _read_cifar_batch(_required_file(directory, CIFAR10_TEST_FILE))
    splits = {
        "train": Split(
            torch.from_numpy(np.concatenate([p[0] for p in parts])),
            torch.from_numpy(np.concatenate([p[1] for p in parts])),
        ),
        "test": Split(torch.from_numpy(np.ascontiguousarray(test_images)), torch.from_numpy(test_labels)),
    }
    return Dataset(
        "cifar10", _cifar_classes(directory), splits, "classification", str(directory), {"split": "official"}
    )


# -------------------------------------------------------------------------------------------- cifar10-c


@register_dataset(
    "cifar10-c",
    description="CIFAR-10-C (one corruption at one severity) from a path you supply",
    needs_root=True,
    options={"corruption": "gaussian_noise", "severity": 5, "test_fraction": 0.2},
    expected_files="labels.npy and <corruption>.npy (e.g. gaussian_noise.npy)",
)
def load_cifar10_c(
    root: Path | None,
    seed: int,
    *,
    corruption: str = "gaussian_noise",
    severity: int = 5,
    test_fraction: float = 0.2,
) -> Dataset:
    """One corruption and severity of CIFAR-10-C, ``uint8 [10000, 3, 32, 32]`` in total.

    ``<corruption>.npy`` stacks the 10,000 CIFAR-10 test images at severities 1..5 (``[50000, 32, 32, 3]``);
    this loads rows ``(severity - 1) * 10000`` to ``severity * 10000`` (memory-mapped, so only those rows are
    read). CIFAR-10-C is a test set: use ``dataset.split("all")`` for all 10,000 images. ``train``/``test``
    are a seeded stratified split with ``test_fraction`` in test, for experiments that need one.
    """
    severity = _severity(severity)
    if not isinstance(corruption, str) or not re.fullmatch(r"[A-Za-z0-9_\-]+", corruption):
        raise ConfigError(
            f"option 'corruption' must be a CIFAR-10-C name such as {', '.join(CIFAR10C_CORRUPTIONS)}"
        )
    how = f"download CIFAR-10-C from {CIFAR10C_URL}, extract it, pass root=<dir>"
    directory = find_dataset_dir("cifar10-c", root, ("labels.npy",), subdirs=("CIFAR-10-C",), how_to_get=how)
    path = directory / f"{corruption}.npy"
    if not path.is_file():
        present = sorted(p.stem for p in directory.glob("*.npy") if p.stem != "labels")
        raise DatasetNotFoundError(
            f"{path} not found; corruptions present in {directory}: {', '.join(present) or 'none'}; "
            f"CIFAR-10-C names: {', '.join(CIFAR10C_CORRUPTIONS)}. How to get it: {how}"
        )
    try:
        images = np.load(path, mmap_mode="r", allow_pickle=False)
        labels = np.load(directory / "labels.npy", allow_pickle=False)
    except NUMPY_READ_ERRORS as exc:
        raise DatasetFormatError(
            f"{path} or labels.npy: not a plain numpy array file ({describe_numpy_error(exc)})"
        ) from None
    if images.ndim != 4 or images.shape[0] % 5:
        raise DatasetFormatError(
            f"{path}: expected [5 * M, H, W, C] images (5 severities), got {images.shape}"
        )
    per = images.shape[0] // 5
    if labels.ndim != 1 or labels.shape[0] not in (per, 5 * per):
        raise DatasetFormatError(
            f"{directory / 'labels.npy'}: expected {5 * per} or {per} labels, got {labels.shape}"
        )
    rows = slice((severity - 1) * per, severity * per)
    chunk, _ = to_uint8_images(np.asarray(images[rows]), source=str(path))
    label_rows = to_int64_targets(
        labels[rows] if labels.shape[0] == 5 * per else labels, source=str(path), what="labels"
    )
    if label_rows.size and (label_rows.min() < 0 or label_rows.max() > 9):
        raise DatasetFormatError(f"{directory / 'labels.npy'}: labels must be in 0..9")
    return split_dataset(
        "cifar10-c",
        torch.from_numpy(chunk),
        torch.from_numpy(label_rows),
        CIFAR10_CLASSES,
        seed=seed,
        test_fraction=test_fraction,
        source=str(path),
        meta={"corruption": corruption, "severity": severity},
    )


# ------------------------------------------------------------------------------------------------ stl10


def _read_stl_pair(directory: Path, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    x_path, y_path = directory / f"{prefix}_X.bin", directory / f"{prefix}_y.bin"
    per_image = 3 * STL10_SIZE * STL10_SIZE
    size = x_path.stat().st_size
    if size % per_image:
        raise DatasetFormatError(f"{x_path}: size {size} bytes is not a multiple of 3*96*96 = {per_image}")
    labels = np.fromfile(y_path, dtype=np.uint8).astype(np.int64)
    n = size // per_image
    if labels.size != n:
        raise DatasetFormatError(f"{x_path} holds {n} images but {y_path} holds {labels.size} labels")
    if labels.size and (labels.min() < 1 or labels.max() > 10):
        raise DatasetFormatError(f"{y_path}: labels must be 1..10 (1-based STL-10 ids)")
    if n == 0:
        raise DatasetFormatError(f"{x_path}: holds no images")
    # memory-mapped: the 8,000 test images are 221 MB; they are read in chunks by the loader
    return np.memmap(x_path, dtype=np.uint8, mode="r", shape=(n, 3, STL10_SIZE, STL10_SIZE)), labels


@register_dataset(
    "stl10",
    description="STL-10 binary from a path you supply, mapped to CIFAR-10's classes and ids (monkey dropped)",
    needs_root=True,
    options={"resize": True},
    expected_files=", ".join(STL10_FILES),
)
def load_stl10(root: Path | None, seed: int, *, resize: bool = True) -> Dataset:
    """STL-10 as a CIFAR-10 domain shift: ``uint8 [N, 3, 32, 32]`` (``resize=True``) or ``[N, 3, 96, 96]``.

    Labels are CIFAR-10 ids and ``classes`` is CIFAR-10's ten names, so a CIFAR-10 model evaluates directly:
    airplane 0, car -> automobile 1, bird 2, cat 3, deer 4, dog 5, horse 7, ship 8, truck 9. ``monkey`` has
    no CIFAR-10 counterpart and is dropped; CIFAR-10's ``frog`` (6) has no STL-10 images. The binary stores
    each image column-major; it is transposed to row-major. ``resize`` shrinks 96 -> 32 by area averaging.
    The official train (4,500 after dropping monkeys) / test (7,200) split is kept.
    """
    del seed  # official split
    if not isinstance(resize, bool):
        raise ConfigError(f"option 'resize' must be true or false, got {resize!r}")
    directory = find_dataset_dir(
        "stl10",
        root,
        STL10_FILES,
        subdirs=("stl10_binary",),
        how_to_get=f"download the binary release from {STL10_URL}, extract it, pass root=<dir>",
    )
    splits: dict[str, Split] = {}
    for prefix in ("train", "test"):
        raw, stl_labels = _read_stl_pair(directory, prefix)
        cifar_labels = STL10_TO_CIFAR10[stl_labels]
        keep = np.flatnonzero(cifar_labels >= 0)
        side = 32 if resize else STL10_SIZE
        images = torch.empty((len(keep), 3, side, side), dtype=torch.uint8)
        for start in range(0, len(keep), 1024):  # bounded memory: 1,024 images (28 MB) at a time
            rows = keep[start : start + 1024]
            # Column-major 96x96 per channel: the stored order is (C, W, H); swap to (C, H, W).
            block = torch.from_numpy(np.ascontiguousarray(raw[rows].transpose(0, 1, 3, 2)))
            images[start : start + len(rows)] = resize_images(block, (side, side), mode="area")
        splits[prefix] = Split(images, torch.from_numpy(cifar_labels[keep]))
    return Dataset(
        "stl10",
        CIFAR10_CLASSES,
        splits,
        "classification",
        str(directory),
        {
            "split": "official",
            "label_ids": "CIFAR-10",
            "dropped": "monkey",
            "no_images_for": "frog",
            "resized": resize,
        },
    )


# ----------------------------------------------------------------------------------------------- arrays


class _ArraySource:
    """Named arrays from a directory of ``.npy`` files or one ``.npz`` (never unpickling objects)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.files: dict[str, Path] = {}
        if path.is_file() and path.suffix != ".npz":
            raise DatasetFormatError(
                f"{path}: the 'arrays' dataset reads a .npz file or a directory of .npy files"
            )
        if path.is_file():
            self.npz: Any = self._open_npz(path)
            self.names = set(self.npz.files)
        else:
            npys = {p.stem: p for p in path.glob("*.npy")}
            if "images" in npys or any(k.endswith("_images") for k in npys):
                self.npz = None
                self.files = npys
                self.names = set(npys)
            else:
                npzs = sorted(path.glob("*.npz"))
                if len(npzs) != 1:
                    raise DatasetNotFoundError(
                        f"{path}: expected images.npy (+ labels.npy or masks.npy), train_/test_ "
                        "prefixed .npy files, or exactly one .npz; found "
                        f"{len(npys)} .npy ({', '.join(sorted(npys)) or '-'}) "
                        f"and {len(npzs)} .npz files"
                    )
                self.path = npzs[0]
                self.npz = self._open_npz(npzs[0])
                self.names = set(self.npz.files)

    @staticmethod
    def _open_npz(path: Path) -> Any:
        try:
            return np.load(path, allow_pickle=False)
        except NUMPY_READ_ERRORS as exc:
            raise DatasetFormatError(
                f"{path}: not a readable .npz file ({describe_numpy_error(exc)})"
            ) from None

    def where(self, name: str) -> str:
        return f"{self.path}[{name!r}]" if self.npz is not None else str(self.files[name])

    def get(self, name: str) -> np.ndarray:
        try:
            return self.npz[name] if self.npz is not None else np.load(self.files[name], allow_pickle=False)
        except NUMPY_READ_ERRORS as exc:
            raise DatasetFormatError(
                f"{self.where(name)}: not a plain numeric array ({describe_numpy_error(exc)})"
            ) from None


def _parse_classes(value: object) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        names = tuple(v.strip() for v in value.split(",") if v.strip())
    elif isinstance(value, Sequence | np.ndarray):
        names = tuple(str(v) for v in value)
    else:
        raise ConfigError(
            f"option 'classes' must be a list of names or a comma-separated string, got {value!r}"
        )
    if not names or len(set(names)) != len(names):
        raise ConfigError(f"option 'classes' must be non-empty and unique, got {names!r}")
    return names


def _encode_labels(
    raw: dict[str, np.ndarray], classes: tuple[str, ...] | None, source: str
) -> tuple[dict[str, np.ndarray], tuple[str, ...]]:
    """Map per-split labels (integers or strings) to int64 ids and choose the class names."""
    kinds = {a.dtype.kind for a in raw.values()}
    if kinds <= {"U", "S"}:
        values = np.concatenate([a.astype(str) for a in raw.values()])
        names = classes or tuple(sorted(set(values.tolist())))
        lookup = np.array(names)
        order = np.argsort(lookup)
        encoded: dict[str, np.ndarray] = {}
        for split, array in raw.items():
            strings = array.astype(str)
            ids = order[np.clip(np.searchsorted(lookup[order], strings), 0, len(lookup) - 1)]
            unknown = lookup[ids] != strings
            if unknown.any():
                raise DatasetFormatError(
                    f"{source}: label {strings[unknown][0]!r} in split {split!r} is not one of "
                    f"classes {names}"
                )
            encoded[split] = ids.astype(np.int64)
        return encoded, names
    encoded = {s: to_int64_targets(a, source=f"{source} ({s})", what="labels") for s, a in raw.items()}
    lo = min(int(a.min()) for a in encoded.values() if a.size)
    hi = max(int(a.max()) for a in encoded.values() if a.size)
    if lo < 0:
        raise DatasetFormatError(f"{source}: classification labels must be >= 0, found {lo}")
    names = classes or tuple(str(i) for i in range(hi + 1))
    if hi >= len(names):
        raise DatasetFormatError(f"{source}: label {hi} is out of range for {len(names)} classes {names}")
    return encoded, names


@register_dataset(
    "arrays",
    description="your own arrays: images.npy + labels.npy/masks.npy, or an .npz, optionally per split",
    needs_root=True,
    options={"test_fraction": 0.2, "layout": "auto", "classes": None},
    expected_files=(
        "images.npy + labels.npy or masks.npy (or train_/test_ prefixed), or one .npz with those keys"
    ),
)
def load_arrays(
    root: Path | None, seed: int, *, test_fraction: float = 0.2, layout: str = "auto", classes: object = None
) -> Dataset:
    """A dataset from plain numpy arrays.

    ``root`` is an ``.npz`` file or a directory of ``.npy`` files (or holding exactly one ``.npz``) with:

    * ``images`` plus ``labels`` (classification, ``[N]`` integers or strings) or ``masks``
      (segmentation, ``[N, H, W]`` integers); train/test is then a seeded split (stratified for labels);
    * or ``train_images``/``train_labels``, ``test_images``/``test_labels`` (any other ``<split>_`` prefix
      adds that split), to keep your own split.

    Images may be ``[N, H, W]``, ``[N, H, W, C]`` or ``[N, C, H, W]`` (``layout`` forces one) and any numeric
    dtype (see :func:`forgetting.data.formats.to_uint8_images`). Class names come from ``classes`` (option,
    or a ``classes`` array in the files), else sorted string labels, else ``"0"``..``"K-1"``. Mask values
    outside ``0..K-1`` (e.g. an ignore index such as 255) are kept as they are.
    """
    if root is None:
        env = os.environ.get(DATA_ENV)
        candidate = Path(env) / "arrays" if env else None
        if candidate is None or not candidate.exists():
            raise DatasetNotFoundError(
                "dataset 'arrays' needs a path: pass root=<.npz file or directory> holding images.npy + "
                f"labels.npy/masks.npy; looked in: ${DATA_ENV}/arrays "
                f"({candidate if candidate else f'${DATA_ENV} is not set'})"
            )
        root = candidate
    if not root.exists():
        raise DatasetNotFoundError(f"dataset 'arrays': {root} does not exist (root argument)")
    src = _ArraySource(root)
    prefixes = sorted(k[: -len("images")] for k in src.names if k.endswith("_images"))
    if "images" in src.names and prefixes:
        raise DatasetFormatError(f"{src.path}: holds both 'images' and {prefixes[0]}images; keep one layout")
    if "images" in src.names:
        prefixes = [""]
    elif not prefixes:
        raise DatasetFormatError(
            f"{src.path}: no 'images' array (found: {', '.join(sorted(src.names)) or 'none'})"
        )
    elif "train_" not in prefixes or "test_" not in prefixes:
        raise DatasetFormatError(
            f"{src.path}: per-split arrays need both train_images and test_images, "
            f"found {', '.join(prefixes)}"
        )
    kind = "masks" if f"{prefixes[0]}masks" in src.names else "labels"
    images: dict[str, np.ndarray] = {}
    targets: dict[str, np.ndarray] = {}
    notes = set()
    for prefix in prefixes:
        split = prefix.rstrip("_") or "all"
        target_key = f"{prefix}{kind}"
        if target_key not in src.names:
            raise DatasetFormatError(f"{src.path}: {prefix}images has no matching {target_key} array")
        images[split], note = to_uint8_images(
            src.get(f"{prefix}images"), source=src.where(f"{prefix}images"), layout=layout
        )
        notes.add(note)
        targets[split] = src.get(target_key)
        n, expected = images[split].shape[0], (images[split].shape[0],)
        if kind == "masks":
            expected = (n, *images[split].shape[2:])
        if targets[split].shape != expected:
            raise DatasetFormatError(
                f"{src.where(target_key)}: shape {targets[split].shape} does not match images "
                f"(expected {expected})"
            )
    names = _parse_classes(classes) or (
        _parse_classes(src.get("classes")) if "classes" in src.names else None
    )
    if kind == "labels":
        encoded, names = _encode_labels(targets, names, str(src.path))
    else:
        encoded = {
            s: to_int64_targets(a, source=f"{src.path} ({s})", what="masks") for s, a in targets.items()
        }
        if names is None:
            hi = max(int(a.max()) for a in encoded.values() if a.size)
            names = tuple(str(i) for i in range(hi + 1))
    meta: dict[str, object] = {"intensity": "; ".join(sorted(notes)), "format": "arrays"}
    if prefixes == [""]:
        all_images, all_targets = torch.from_numpy(images["all"]), torch.from_numpy(encoded["all"])
        if kind == "labels":
            return split_dataset(
                "arrays",
                all_images,
                all_targets,
                names,
                seed=seed,
                test_fraction=test_fraction,
                source=str(src.path),
                meta=meta,
            )
        if not 0.0 < float(test_fraction) < 1.0:
            raise ConfigError(
                f"option 'test_fraction' must be strictly between 0 and 1, got {test_fraction!r}"
            )
        perm = torch.from_numpy(np.random.default_rng(seed).permutation(len(all_images)))
        n_test = round(float(test_fraction) * len(all_images))
        test_idx, train_idx = perm[:n_test].sort().values, perm[n_test:].sort().values
        splits = {
            "train": Split(all_images[train_idx], all_targets[train_idx]),
            "test": Split(all_images[test_idx], all_targets[test_idx]),
        }
        meta.update({"split": "random", "seed": seed, "test_fraction": float(test_fraction)})
        return Dataset("arrays", names, splits, "segmentation", str(src.path), meta)
    splits = {s: Split(torch.from_numpy(images[s]), torch.from_numpy(encoded[s])) for s in images}
    meta["split"] = "given"
    task: DatasetTask = "segmentation" if kind == "masks" else "classification"
    return Dataset("arrays", names, splits, task, str(src.path), meta)


# ----------------------------------------------------------------------------------------- image-folder

IMAGE_FOLDER_CSV = "labels.csv"


def _read_image(path: Path, size: tuple[int, int] | None) -> np.ndarray:
    """One image as ``uint8 [H, W, C]`` (C = 1 or 3, alpha dropped; 16-bit and float images mapped to 8 bits
    by the rule of :mod:`forgetting.data.image_files`)."""
    try:
        from PIL import Image
    except ImportError:  # matplotlib reads PNG without Pillow
        import matplotlib.image as mpimg

        if size is not None:
            raise ConfigError("option 'size' needs Pillow (pip install pillow)") from None
        array = np.asarray(mpimg.imread(path))
        if array.dtype != np.uint8:
            array = np.rint(np.clip(array, 0.0, 1.0) * 255.0).astype(np.uint8)
        if array.ndim == 2:
            array = array[..., None]
        return array[..., :3] if array.shape[-1] in (3, 4) else array[..., :1]
    with open_image(path) as img:  # size limit; 16-bit and float images by the rule of data.image_files
        try:
            converted = to_8bit(img, str(path))
            if size is not None:
                converted = converted.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            array = np.asarray(converted)
        except OSError as exc:
            raise DatasetFormatError(f"{path}: cannot read image ({exc})") from exc
    return array[..., None] if array.ndim == 2 else array


def read_image_files(
    paths: Sequence[Path],
    size: tuple[int, int] | None = None,
    *,
    resize_hint: str = "pass the option size=[height, width] to resize",
) -> torch.Tensor:
    """Read image files into one ``uint8 [N, C, H, W]`` tensor (Pillow; matplotlib for PNG without it).

    If every image is grayscale the result has 1 channel, else 3 (RGB, grayscale repeated, alpha dropped).
    All images must share a size unless ``size`` (``(height, width)``) resizes them; ``resize_hint`` ends the
    error for mixed sizes (how the caller's user sets ``size``).

    Raises:
        DatasetFormatError: an unreadable file, or images of different sizes without ``size``.
        ConfigError: ``paths`` is empty.
    """
    if not paths:
        raise ConfigError("read_image_files: no image files given")
    arrays: list[np.ndarray] = []
    for path in paths:
        array = _read_image(path, size)
        if arrays and array.shape[:2] != arrays[0].shape[:2]:
            raise DatasetFormatError(
                f"{path} is {array.shape[1]}x{array.shape[0]} but {paths[0]} is "
                f"{arrays[0].shape[1]}x{arrays[0].shape[0]} (width x height); {resize_hint}"
            )
        arrays.append(array)
    channels = 3 if any(a.shape[2] == 3 for a in arrays) else 1
    stacked = np.stack([np.repeat(a, channels // a.shape[2], axis=2) for a in arrays])
    return torch.from_numpy(np.ascontiguousarray(stacked.transpose(0, 3, 1, 2)))


def _parse_size(value: object) -> tuple[int, int] | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return (value, value)
    if isinstance(value, Sequence) and len(value) == 2 and all(isinstance(v, int) and v > 0 for v in value):
        return (int(value[0]), int(value[1]))
    raise ConfigError(f"option 'size' must be a positive int or [height, width], got {value!r}")


@register_dataset(
    "image-folder",
    description="a folder of image files plus labels.csv (filename,label[,split]) you supply",
    needs_root=True,
    options={"test_fraction": 0.2, "size": None},
    expected_files="labels.csv (columns filename,label[,split]) and the image files it names",
)
def load_image_folder(
    root: Path | None, seed: int, *, test_fraction: float = 0.2, size: object = None
) -> Dataset:
    """Image files listed in ``labels.csv`` (columns ``filename,label`` and optionally ``split``).

    Filenames are relative to the folder. Images are read with Pillow (matplotlib for PNG without it);
    if every image is grayscale the dataset has 1 channel, else 3 (RGB, alpha dropped). All images must
    share a size unless ``size`` (``int`` or ``[height, width]``) resizes them. Class names are the sorted
    label strings. With a ``split`` column its values name the splits (``train`` and ``test`` required);
    otherwise train/test is a seeded stratified split.
    """
    size_hw = _parse_size(size)
    directory = find_dataset_dir(
        "image-folder",
        root,
        (IMAGE_FOLDER_CSV,),
        how_to_get="put your images in a folder with a labels.csv (filename,label) and pass root=<folder>",
    )
    csv_path = directory / IMAGE_FOLDER_CSV
    try:
        with csv_path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle, strict=True)
            columns = [c.strip() for c in reader.fieldnames or []]
            if "filename" not in columns or "label" not in columns:
                raise DatasetFormatError(f"{csv_path}: needs columns 'filename' and 'label', found {columns}")
            rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k is not None} for row in reader]
    except UnicodeDecodeError as exc:
        raise DatasetFormatError(f"{csv_path}: not UTF-8 text ({exc}); save it as UTF-8") from None
    except csv.Error as exc:
        raise DatasetFormatError(
            f"{csv_path} line {reader.line_num}: not valid CSV ({exc}); a cell that opens a quote must "
            "close it"
        ) from None
    if not rows:
        raise DatasetFormatError(f"{csv_path}: no rows")
    paths: list[Path] = []
    for line, row in enumerate(rows, start=2):
        path = directory / row["filename"]
        if not path.is_file():
            raise DatasetNotFoundError(f"{csv_path} line {line}: image {path} does not exist")
        paths.append(path)
    images = read_image_files(paths, size_hw)
    label_strings = np.array([row["label"] for row in rows])
    classes = tuple(sorted(set(label_strings.tolist())))
    labels = torch.from_numpy(np.searchsorted(np.array(classes), label_strings).astype(np.int64))
    if "split" not in columns:
        return split_dataset(
            "image-folder",
            images,
            labels,
            classes,
            seed=seed,
            test_fraction=test_fraction,
            source=str(directory),
            meta={"format": "image-folder"},
        )
    split_names = np.array([row.get("split", "") for row in rows])
    if not {"train", "test"} <= set(split_names.tolist()):
        raise DatasetFormatError(
            f"{csv_path}: column 'split' must include 'train' and 'test', "
            f"found {sorted(set(split_names.tolist()))}"
        )
    splits = {}
    for name in sorted(set(split_names.tolist())):
        idx = torch.from_numpy(np.flatnonzero(split_names == name))
        splits[name] = Split(images[idx], labels[idx])
    return Dataset("image-folder", classes, splits, "classification", str(directory), {"split": "given"})
