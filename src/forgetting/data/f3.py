"""The F3 Netherlands facies benchmark (Alaudah et al., 2019) from the ``.npy`` files users download.

The benchmark ships three labelled volumes, each ``[inlines, crosslines, depth]``: ``train_seismic.npy`` /
``train_labels.npy`` (401 x 701 x 255), ``test1_seismic.npy`` / ``test1_labels.npy`` (200 x 701 x 255) and
``test2_seismic.npy`` / ``test2_labels.npy`` (601 x 200 x 255); amplitudes are floats, labels the six facies
0..5 (:data:`forgetting.data.seismic.F3_CLASSES`). The download keeps them in ``data/train/`` and
``data/test_once/``; this loader finds each file in ``root``, ``root/train``, ``root/test_once``,
``root/data``, ``root/data/train`` or ``root/data/test_once`` (then the same under ``$FORGETTING_DATA/f3``).

Volumes are memory-mapped and only the kept sections are read. Sections are cut as in
:func:`forgetting.data.seismic.sections_from_volume` (depth is the image height) and amplitudes map to
uint8 with one clip for every volume: the 99.5th percentile of ``|train amplitude|``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from forgetting._io import NUMPY_READ_ERRORS, describe_numpy_error
from forgetting.data.dataset import Dataset, Split
from forgetting.data.formats import search_places
from forgetting.data.registry import register_dataset
from forgetting.data.seismic import (
    F3_CLASSES,
    ORIENTATIONS,
    PAD_LABEL,
    Orientation,
    amplitude_clip,
    amplitude_to_uint8,
    sections_from_volume,
)
from forgetting.exceptions import ConfigError, DatasetFormatError, DatasetNotFoundError

__all__ = ["F3_FILES", "F3_HOW_TO_GET", "load_f3"]

logger = logging.getLogger(__name__)

#: The files of each F3 volume: ``volume -> (seismic, labels)``.
F3_FILES: dict[str, tuple[str, str]] = {
    "train": ("train_seismic.npy", "train_labels.npy"),
    "test1": ("test1_seismic.npy", "test1_labels.npy"),
    "test2": ("test2_seismic.npy", "test2_labels.npy"),
}
F3_SUBDIRS: tuple[str, ...] = ("train", "test_once", "data", "data/train", "data/test_once")
F3_HOW_TO_GET = (
    "download data.zip of the facies classification benchmark (github.com/yalaudah/"
    "facies_classification_benchmark; Zenodo record 3755060), unzip it and pass root=<the folder holding "
    "data/> (or put it in $FORGETTING_DATA/f3)"
)


def _find(name: str, places: list[Path]) -> Path | None:
    for place in places:
        path = place / name
        if path.is_file():
            return path
    return None


def _open(path: Path) -> np.ndarray:
    """Memory-map a ``.npy`` file (never unpickling)."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except NUMPY_READ_ERRORS as exc:
        raise DatasetFormatError(
            f"{path}: not a plain numpy array file ({describe_numpy_error(exc)})"
        ) from None
    if not isinstance(array, np.ndarray):
        raise DatasetFormatError(f"{path}: expected one array (.npy), got {type(array).__name__}")
    return array


def _read_volume(volume: str, paths: tuple[Path, Path]) -> tuple[np.ndarray, np.ndarray]:
    seismic, labels = _open(paths[0]), _open(paths[1])
    if seismic.ndim != 3:
        raise DatasetFormatError(
            f"{paths[0]}: F3 {volume} seismic must be a 3-D volume [inlines, crosslines, depth], "
            f"got shape {seismic.shape}"
        )
    if labels.shape != seismic.shape:
        raise DatasetFormatError(
            f"{paths[1]}: F3 {volume} labels have shape {labels.shape} but the seismic "
            f"{paths[0].name} has {seismic.shape}; they must match"
        )
    if not np.issubdtype(seismic.dtype, np.number):
        raise DatasetFormatError(f"{paths[0]}: seismic amplitudes must be numeric, got dtype {seismic.dtype}")
    if min(seismic.shape) < 1:
        raise DatasetFormatError(f"{paths[0]}: empty volume {seismic.shape}")
    return seismic, labels


@register_dataset(
    "f3",
    description="F3 Netherlands facies benchmark .npy volumes (train, test1, test2) from a path you supply",
    needs_root=True,
    options={"orientation": "inline", "stride": 1, "test": "test1"},
    expected_files=", ".join(f for pair in F3_FILES.values() for f in pair)
    + " (test2 optional), as in data/train and data/test_once",
)
def load_f3(
    root: Path | None, seed: int, *, orientation: str = "inline", stride: int = 1, test: str = "test1"
) -> Dataset:
    """The F3 facies benchmark as sections: images uint8 ``[N, 1, depth, W]``, masks int64 ``[N, depth, W]``.

    Args:
        root: the folder holding the files (see the module docstring for the sub-folders searched).
        seed: unused (the benchmark's split is official).
        orientation: ``"inline"`` (default: 401 train sections of 255 x 701), ``"crossline"`` or ``"both"``
            (narrower sections padded on the right with mask :data:`PAD_LABEL`; at full size the train
            masks alone take 1.6 GB as int64).
        stride: keep every ``stride``-th section of each orientation (F3 sections are highly redundant).
        test: which test volume becomes the ``"test"`` split, ``"test1"`` or ``"test2"``.

    Returns:
        A segmentation :class:`Dataset` with splits ``train``, ``test1``, ``test2`` (when its files exist)
        and ``test`` (the same object as the chosen one). ``meta`` holds ``ignore_index``
        (:data:`PAD_LABEL`), ``section_names`` per split, the volume shapes and the amplitude clip.

    Raises:
        DatasetNotFoundError: the train or the chosen test files are missing; the message lists every path
            looked in and how to get the data.
        DatasetFormatError: a file is not a plain ``.npy`` array, a volume is not 3-D, labels and seismic
            differ in shape, or labels are not integers in 0..5.
        ConfigError: a bad option.
    """
    del seed  # official split
    if orientation not in ORIENTATIONS:
        raise ConfigError(f"option 'orientation' must be one of {list(ORIENTATIONS)}, got {orientation!r}")
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise ConfigError(f"option 'stride' must be an integer >= 1, got {stride!r}")
    if test not in ("test1", "test2"):
        raise ConfigError(f"option 'test' must be 'test1' or 'test2', got {test!r}")
    places, notes = search_places("f3", root, subdirs=F3_SUBDIRS)
    dirs = [p.path for p in places if p.path.is_dir()]
    found: dict[str, tuple[Path, Path]] = {}
    missing: list[str] = []
    for volume, pair in F3_FILES.items():
        candidates = [_find(name, dirs) for name in pair]
        if candidates[0] is not None and candidates[1] is not None:
            found[volume] = (candidates[0], candidates[1])
        elif volume in ("train", test):
            missing += [name for name, path in zip(pair, candidates, strict=True) if path is None]
    if missing:
        looked = "\n".join(
            f"  - {p.path} ({p.why}){'' if p.path.is_dir() else ': no such directory'}" for p in places
        )
        extra = "".join(f"\n  note: {n}" for n in notes)
        raise DatasetNotFoundError(
            f"dataset 'f3' not found: missing {', '.join(missing)}; looked in:\n"
            f"{looked or '  (no directory to look in: pass root=...)'}{extra}\nHow to get it: {F3_HOW_TO_GET}"
        )
    train_seismic, _ = _read_volume("train", found["train"])
    clip = amplitude_clip(train_seismic)
    splits: dict[str, Split] = {}
    names: dict[str, list[str]] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    for volume, paths in found.items():
        seismic, labels = _read_volume(volume, paths)
        try:
            amplitude, masks, section_names = sections_from_volume(
                seismic,
                labels,
                orientation=cast(Orientation, orientation),
                stride=stride,
            )
        except DatasetFormatError as exc:
            raise DatasetFormatError(f"{paths[1]}: {exc}") from None
        valid = masks != PAD_LABEL
        bad = valid & ((masks < 0) | (masks >= len(F3_CLASSES)))
        if bad.any():
            values = np.unique(masks[bad])[:10].tolist()
            raise DatasetFormatError(
                f"{paths[1]}: F3 labels must be facies ids 0..{len(F3_CLASSES) - 1}, found {values}"
            )
        splits[volume] = Split(torch.from_numpy(amplitude_to_uint8(amplitude, clip)), torch.from_numpy(masks))
        names[volume] = section_names
        shapes[volume] = tuple(int(s) for s in seismic.shape)
        logger.debug("f3 %s: %s -> %d sections", volume, seismic.shape, len(section_names))
    if "test2" not in found:
        logger.info("f3: test2 files not found; loading train and test1 only")
    splits["test"] = splits[test]
    names["test"] = names[test]
    meta: dict[str, Any] = {
        "ignore_index": PAD_LABEL,
        "section_names": names,
        "volume_shapes": shapes,
        "orientation": orientation,
        "stride": stride,
        "test": test,
        "amplitude_clip": clip,
        "files": {v: [str(p) for p in paths] for v, paths in found.items()},
        "split": "official",
    }
    return Dataset("f3", F3_CLASSES, splits, "segmentation", str(found["train"][0].parent), meta)
