"""Crash-safe file writes shared by the tracker, the results store and labelling projects; creating output
directories and reading numpy files with errors a user can act on."""

from __future__ import annotations

import functools
import os
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np

from forgetting.exceptions import ConfigError, ForgettingError

__all__ = [
    "NUMPY_READ_ERRORS",
    "atomic_file",
    "atomic_savez",
    "atomic_write_bytes",
    "atomic_write_text",
    "describe_numpy_error",
    "make_directory",
]

#: What reading a damaged or foreign ``.npy``/``.npz`` can raise (``np.load`` and reading an array of an
#: open ``.npz``, which decompresses lazily).
NUMPY_READ_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    ValueError,
    EOFError,
    KeyError,
    zipfile.BadZipFile,
    zlib.error,
)


def describe_numpy_error(exc: BaseException) -> str:
    """A short reason why a numpy file could not be read, without numpy's hint to enable ``allow_pickle``
    (a file that is neither ``.npy`` nor ``.npz`` is not a pickle to trust either)."""
    text = str(exc)
    if "allow_pickle" in text or "pickled data" in text:
        return "not a numpy .npy/.npz file (or a damaged one)"
    if isinstance(exc, zipfile.BadZipFile | zlib.error | EOFError):
        return f"damaged or truncated file ({type(exc).__name__}: {text})" if text else "damaged or truncated"
    return text or type(exc).__name__


@functools.cache
def _file_mode() -> int:
    """The permissions a plain ``open()`` would give a new file: 0666 minus the process umask."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def make_directory(
    path: str | os.PathLike[str], *, what: str, hint: str, error: type[ForgettingError] = ConfigError
) -> Path:
    """Create ``path`` (and its parents) if needed and check that it is a writable directory.

    Args:
        path: the directory.
        what: what it is, for the message (``"run directory"``).
        hint: how to fix it (``"pass another --out"``).
        error: the exception to raise.

    Raises:
        error: ``path`` is a file, lies under a file, cannot be created or is not writable.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise error(f"{what} {path} is a file, not a directory; {hint}")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise error(f"{what} {path} cannot be created: a part of the path is a file; {hint}") from None
    except NotADirectoryError:
        raise error(f"{what} {path} cannot be created: a part of the path is a file; {hint}") from None
    except OSError as exc:
        raise error(f"{what} {path} cannot be created: {exc.strerror or exc}; {hint}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise error(f"{what} {path} is not writable; {hint}")
    return path


@contextmanager
def atomic_file(path: Path, *, mode: int | None = None) -> Iterator[BinaryIO]:
    """A binary file to write that appears at ``path`` only when the block ends without an error.

    The data go to a temporary file in the same directory, are fsynced, get permissions ``mode`` (default:
    what ``open()`` gives, 0666 minus the umask, usually 0644; mkstemp alone would leave 0600), then
    ``os.replace`` puts them in place: a crash leaves either the old file or the new one, never a torn one.
    """
    if mode is None:
        mode = _file_mode()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_savez(path: str | os.PathLike[str], arrays: dict[str, np.ndarray]) -> Path:
    """Write ``arrays`` as a compressed ``.npz`` at exactly ``path``, atomically, with the permissions of a
    plain ``open()`` (usually 0644). Returns the path."""
    path = Path(path)
    with atomic_file(path) as fh:
        np.savez_compressed(fh, **arrays)
    return path


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` at exactly ``path``, atomically, with the permissions of a plain ``open()`` (usually
    0644: these files are meant to be shared). Returns the path."""
    path = Path(path)
    with atomic_file(path) as fh:
        fh.write(data)
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 ``text`` at exactly ``path``, atomically (see :func:`atomic_write_bytes`)."""
    return atomic_write_bytes(path, text.encode("utf-8"))
