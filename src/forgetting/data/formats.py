"""Low-level readers shared by the dataset loaders.

Everything here turns bytes on disk into numpy arrays and checks them on the way: IDX files (the MNIST
family), pickles restricted to numpy arrays (CIFAR-10 batches, Animal-MNIST), user arrays in any of the
usual image layouts, and the search for a dataset's directory with an error that lists every place looked.
"""

from __future__ import annotations

import gzip
import io
import logging
import os
import pickle
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from forgetting.exceptions import ConfigError, DatasetFormatError, DatasetNotFoundError

logger = logging.getLogger(__name__)

DATA_ENV = "FORGETTING_DATA"
"""Environment variable naming a directory that holds one sub-directory per dataset."""

LAYOUTS: tuple[str, ...] = ("auto", "NCHW", "NHWC")

# ----------------------------------------------------------------------------------------------------------
# Finding a dataset's directory
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchPlace:
    """One directory a loader looks in, and why (``"root argument"``, ``"$FORGETTING_DATA"``, ...)."""

    path: Path
    why: str


def search_places(
    name: str,
    root: Path | None,
    *,
    subdirs: Sequence[str] = (),
    system_dirs: Sequence[str | Path] = (),
) -> tuple[list[SearchPlace], list[str]]:
    """The directories to look in for dataset ``name``, in order, plus notes on places skipped.

    Order: ``root`` and ``root/<subdir>``; ``$FORGETTING_DATA/<name>`` and its ``<subdir>``s; ``system_dirs``.
    """
    places: list[SearchPlace] = []
    notes: list[str] = []

    def add(base: Path, why: str) -> None:
        places.append(SearchPlace(base, why))
        places.extend(SearchPlace(base / sub, why) for sub in subdirs)

    if root is not None:
        add(Path(root).expanduser(), "root argument")
    env = os.environ.get(DATA_ENV)
    if env:
        add(Path(env).expanduser() / name, f"${DATA_ENV}/{name}")
    else:
        notes.append(f"${DATA_ENV} is not set (set it to a folder holding a {name}/ sub-folder)")
    places.extend(SearchPlace(Path(d), "system location") for d in system_dirs)
    return places, notes


def existing_file(directory: Path, name: str) -> Path | None:
    """``directory/name`` if it exists, else the same name with ``.gz`` added or removed, else ``None``."""
    candidates = [name, name[:-3]] if name.endswith(".gz") else [name, name + ".gz"]
    for candidate in candidates:
        path = directory / candidate
        if path.is_file():
            return path
    return None


def find_dataset_dir(
    name: str,
    root: Path | None,
    required: Sequence[str],
    *,
    how_to_get: str,
    subdirs: Sequence[str] = (),
    system_dirs: Sequence[str | Path] = (),
) -> Path:
    """The first search place (see :func:`search_places`) that holds every file in ``required``.

    A name ending in ``.gz`` also matches the uncompressed file and vice versa.

    Raises:
        DatasetNotFoundError: naming every directory looked in, what each lacked, and ``how_to_get``.
    """
    places, notes = search_places(name, root, subdirs=subdirs, system_dirs=system_dirs)
    lines: list[str] = []
    for place in places:
        if not place.path.is_dir():
            lines.append(f"  - {place.path} ({place.why}): no such directory")
            continue
        missing = [f for f in required if existing_file(place.path, f) is None]
        if not missing:
            logger.debug("dataset %s found in %s (%s)", name, place.path, place.why)
            return place.path
        lines.append(f"  - {place.path} ({place.why}): missing {', '.join(missing)}")
    looked = "\n".join(lines) if lines else "  (no directory to look in: pass root=...)"
    extra = "".join(f"\n  note: {n}" for n in notes)
    raise DatasetNotFoundError(
        f"dataset {name!r} not found. It needs the files {', '.join(required)}; looked in:\n"
        f"{looked}{extra}\nHow to get it: {how_to_get}"
    )


# ----------------------------------------------------------------------------------------------------------
# Raw bytes
# ----------------------------------------------------------------------------------------------------------

_GZIP_MAGIC = b"\x1f\x8b"


def read_bytes(path: Path) -> bytes:
    """The contents of ``path``, gunzipped when the file starts with the gzip magic number.

    Raises:
        DatasetFormatError: the file claims to be gzip but is truncated or corrupt.
    """
    raw = Path(path).read_bytes()
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError) as exc:
        raise DatasetFormatError(f"{path}: corrupt gzip data ({exc}); re-download the file") from exc


# ----------------------------------------------------------------------------------------------------------
# IDX (MNIST / Fashion-MNIST)
# ----------------------------------------------------------------------------------------------------------

_IDX_DTYPES: dict[int, np.dtype[Any]] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def parse_idx(data: bytes, *, source: str = "<bytes>", expected_ndim: int | None = None) -> np.ndarray:
    """Decode an IDX file (the MNIST format) into a native-endian numpy array.

    Layout: 2 zero bytes, a type code (``0x08`` = uint8, ...), the number of dimensions, one big-endian
    ``int32`` per dimension, then the data in C order.

    Raises:
        DatasetFormatError: naming ``source`` and the bad field (magic number, type code, dimensions, size).
    """
    if len(data) < 4:
        raise DatasetFormatError(f"{source}: IDX header truncated ({len(data)} bytes, need at least 4)")
    magic = int.from_bytes(data[:4], "big")
    if data[0] != 0 or data[1] != 0:
        raise DatasetFormatError(
            f"{source}: bad IDX magic number 0x{magic:08X}; the first two bytes must be zero "
            "(expected e.g. 0x00000803 for images, 0x00000801 for labels)"
        )
    type_code, ndim = data[2], data[3]
    if type_code not in _IDX_DTYPES:
        raise DatasetFormatError(
            f"{source}: bad IDX type code 0x{type_code:02X} in magic number 0x{magic:08X}; "
            f"allowed: {', '.join(f'0x{c:02X}' for c in _IDX_DTYPES)}"
        )
    if expected_ndim is not None and ndim != expected_ndim:
        raise DatasetFormatError(
            f"{source}: IDX magic number 0x{magic:08X} declares {ndim} dimensions, expected {expected_ndim}"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetFormatError(
            f"{source}: IDX dimension sizes truncated ({len(data)} bytes, need {header})"
        )
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">i4", count=ndim, offset=4))
    if any(d < 0 for d in dims):
        raise DatasetFormatError(f"{source}: negative IDX dimension size in {dims}")
    dtype = _IDX_DTYPES[type_code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != expected:
        raise DatasetFormatError(
            f"{source}: IDX data size is {len(data) - header} bytes but the dimensions {dims} "
            f"of type {dtype} need {expected}"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return array.astype(dtype.newbyteorder("="), copy=False)


def read_idx(path: Path, *, expected_ndim: int | None = None) -> np.ndarray:
    """Read an IDX file, gzipped or not (see :func:`parse_idx`)."""
    return parse_idx(read_bytes(path), source=str(path), expected_ndim=expected_ndim)


# ----------------------------------------------------------------------------------------------------------
# Pickles restricted to numpy arrays
# ----------------------------------------------------------------------------------------------------------


def _numpy_attr(module_names: Iterable[str], name: str) -> Any:
    import importlib

    for module_name in module_names:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        if hasattr(module, name):
            return getattr(module, name)
    raise ImportError(f"numpy provides {name} in none of {list(module_names)}")


def _allowed_globals() -> dict[tuple[str, str], Any]:
    import codecs

    # numpy 2 moved numpy.core to numpy._core; old pickles name the former. Resolve to the real objects
    # without touching the deprecated alias.
    reconstruct = _numpy_attr(("numpy._core.multiarray", "numpy.core.multiarray"), "_reconstruct")
    scalar = _numpy_attr(("numpy._core.multiarray", "numpy.core.multiarray"), "scalar")
    frombuffer = _numpy_attr(("numpy._core.numeric", "numpy.core.numeric"), "_frombuffer")
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        # Python 3 writes bytes with protocol < 3 as _codecs.encode(str, "latin1").
        ("_codecs", "encode"): codecs.encode,
    }
    for module in ("numpy.core", "numpy._core"):
        allowed[(f"{module}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{module}.multiarray", "scalar")] = scalar
        allowed[(f"{module}.numeric", "_frombuffer")] = frombuffer
    return allowed


class ArrayUnpickler(pickle.Unpickler):
    """An unpickler that rebuilds numpy arrays, dtypes and plain Python containers, and nothing else.

    ``find_class`` allows only numpy's array reconstruction functions, ``numpy.ndarray``, ``numpy.dtype``
    and ``_codecs.encode``; any other global (``os.system``, ``builtins.eval``, ...) raises
    :class:`DatasetFormatError`, so a crafted file cannot run code.
    """

    def __init__(self, file: io.BufferedIOBase | io.BytesIO, *, source: str, encoding: str = "bytes") -> None:
        super().__init__(file, encoding=encoding)
        self._source = source
        self._allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise DatasetFormatError(
                f"{self._source}: refusing to unpickle global {module}.{name}; only numpy arrays and plain "
                "Python containers are allowed in dataset pickles. If this file is yours, re-save it with "
                "numpy.save; if not, do not load it."
            ) from None


def load_array_pickle(path: Path, *, encoding: str = "bytes") -> Any:
    """Unpickle ``path`` (gzipped or not) with :class:`ArrayUnpickler`.

    Raises:
        DatasetFormatError: a forbidden global, a corrupt or truncated pickle, or an object-dtype array.
    """
    data = read_bytes(path)
    try:
        obj = ArrayUnpickler(io.BytesIO(data), source=str(path), encoding=encoding).load()
    except DatasetFormatError:
        raise
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        IndexError,
        KeyError,
        AttributeError,
    ) as e:
        raise DatasetFormatError(
            f"{path}: not a valid pickle of numpy arrays ({type(e).__name__}: {e})"
        ) from e
    _reject_object_arrays(obj, str(path))
    return obj


def _reject_object_arrays(obj: Any, source: str) -> None:
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, np.ndarray) and item.dtype.hasobject:
            raise DatasetFormatError(
                f"{source}: contains an object-dtype array; only numeric arrays are allowed"
            )
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)


# ----------------------------------------------------------------------------------------------------------
# Arrays -> uint8 NCHW / int64 targets
# ----------------------------------------------------------------------------------------------------------

_CHANNEL_COUNTS = (1, 3, 4)


def to_uint8_images(array: np.ndarray, *, source: str, layout: str = "auto") -> tuple[np.ndarray, str]:
    """Convert images to ``uint8 [N, C, H, W]`` and say how intensities were mapped.

    Accepted: ``[N, H, W]`` (grayscale), ``[N, H, W, C]`` or ``[N, C, H, W]`` with ``C`` in 1, 3, 4
    (``layout="auto"`` picks the axis holding a channel count; pass ``"NCHW"``/``"NHWC"`` when ambiguous).
    Intensities: ``uint8`` as is; ``bool`` -> 0/255; integers within 0..255 cast; floats within 0..1 scaled
    by 255; anything else min-max scaled to 0..255 over the whole array.

    Returns:
        ``(images uint8 [N, C, H, W], note)`` where ``note`` describes the intensity mapping.

    Raises:
        DatasetFormatError: wrong number of dimensions, no channel axis, or a non-numeric dtype.
        ConfigError: an unknown ``layout``.
    """
    if layout not in LAYOUTS:
        raise ConfigError(f"option 'layout' must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise DatasetFormatError(f"{source}: images must be numeric, got dtype {array.dtype}")
    if array.ndim == 3:
        array = array[:, None]
    elif array.ndim == 4:
        channels_first = array.shape[1] in _CHANNEL_COUNTS
        channels_last = array.shape[3] in _CHANNEL_COUNTS
        if layout == "auto":
            if channels_last and not channels_first:
                layout = "NHWC"
            elif channels_first:
                layout = "NCHW"
            else:
                raise DatasetFormatError(
                    f"{source}: images of shape {array.shape} have no channel axis of size 1, 3 or 4 "
                    "at position 1 (NCHW) or 3 (NHWC)"
                )
        if layout == "NHWC":
            array = array.transpose(0, 3, 1, 2)
    else:
        raise DatasetFormatError(
            f"{source}: images must be [N, H, W], [N, H, W, C] or [N, C, H, W], got shape {array.shape}"
        )
    images, note = _to_uint8(array)
    return np.ascontiguousarray(images), note


def _to_uint8(array: np.ndarray) -> tuple[np.ndarray, str]:
    if array.dtype == np.uint8:
        return array, "uint8 as stored"
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * np.uint8(255), "bool mapped to 0/255"
    if array.size == 0:
        return array.astype(np.uint8), "empty"
    lo, hi = float(array.min()), float(array.max())
    if np.issubdtype(array.dtype, np.integer) and lo >= 0 and hi <= 255:
        return array.astype(np.uint8), "integers 0..255 cast to uint8"
    if np.issubdtype(array.dtype, np.floating) and lo >= 0.0 and hi <= 1.0:
        return np.rint(array * 255.0).astype(np.uint8), "floats in [0, 1] scaled by 255"
    if np.issubdtype(array.dtype, np.floating) and lo >= 0.0 and hi <= 255.0:
        return np.rint(array).astype(np.uint8), "floats in [0, 255] rounded"
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    scaled = np.rint((array.astype(np.float64) - lo) * scale).astype(np.uint8)
    return scaled, f"min-max scaled from [{lo:g}, {hi:g}] to [0, 255]"


def to_int64_targets(array: np.ndarray, *, source: str, what: str) -> np.ndarray:
    """Integer (or bool) labels/masks as ``int64``; any other dtype raises :class:`DatasetFormatError`."""
    if array.dtype == np.bool_ or np.issubdtype(array.dtype, np.integer):
        return array.astype(np.int64)
    if (
        np.issubdtype(array.dtype, np.floating)
        and np.all(np.isfinite(array))
        and np.all(array == np.rint(array))
    ):
        return array.astype(np.int64)
    raise DatasetFormatError(f"{source}: {what} must be integers, got dtype {array.dtype}")


def resize_images(
    images_N_C_H_W: torch.Tensor, size: tuple[int, int], *, mode: str = "bilinear"
) -> torch.Tensor:
    """Resize ``uint8 [N, C, H, W]`` to ``uint8 [N, C, *size]`` in chunks (no full float copy in memory).

    ``mode="area"`` averages (exact for integer factors); ``"bilinear"`` antialiases when shrinking.
    """
    if tuple(images_N_C_H_W.shape[-2:]) == tuple(size):
        return images_N_C_H_W
    n, c = images_N_C_H_W.shape[:2]
    out = torch.empty((n, c, *size), dtype=torch.uint8, device=images_N_C_H_W.device)
    shrink = size[0] < images_N_C_H_W.shape[-2] or size[1] < images_N_C_H_W.shape[-1]
    chunk = max(1, (1 << 24) // max(1, c * images_N_C_H_W.shape[-2] * images_N_C_H_W.shape[-1]))
    for start in range(0, n, chunk):
        block = images_N_C_H_W[start : start + chunk].float()
        if mode == "area":
            resized = F.interpolate(block, size=size, mode="area")
        else:
            resized = F.interpolate(block, size=size, mode=mode, align_corners=False, antialias=shrink)
        out[start : start + chunk] = resized.round_().clamp_(0, 255).to(torch.uint8)
    return out


def convert_channels(images_N_C_H_W: torch.Tensor, channels: int) -> torch.Tensor:
    """``uint8 [N, C, H, W]`` -> ``uint8 [N, channels, H, W]``: gray -> RGB by repetition, RGB -> gray by
    ITU-R BT.601 luma, RGBA -> RGB by dropping alpha.

    Raises:
        ConfigError: a conversion other than those.
    """
    c = int(images_N_C_H_W.shape[1])
    if c == channels:
        return images_N_C_H_W
    if c == 4 and channels in (1, 3):
        images_N_C_H_W = images_N_C_H_W[:, :3]
        c = 3
        if channels == 3:
            return images_N_C_H_W.contiguous()
    if c == 1 and channels == 3:
        return images_N_C_H_W.expand(-1, 3, -1, -1).contiguous()
    if c == 3 and channels == 1:
        weights = torch.tensor([0.299, 0.587, 0.114], device=images_N_C_H_W.device).view(1, 3, 1, 1)
        luma = (images_N_C_H_W.float() * weights).sum(dim=1, keepdim=True)
        return luma.round_().clamp_(0, 255).to(torch.uint8)
    raise ConfigError(f"cannot convert images with {c} channels to {channels}; supported: 1<->3, 4->3, 4->1")
