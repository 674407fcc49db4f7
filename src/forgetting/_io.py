"""Crash-safe file writes shared by the tracker, the results store and labelling projects."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np

__all__ = ["atomic_savez", "atomic_write_bytes", "atomic_write_text"]


@contextmanager
def _atomic_binary(path: Path, *, mode: int | None = None) -> Iterator[BinaryIO]:
    """A binary file to write that appears at ``path`` only when the block ends without an error.

    The data go to a temporary file in the same directory, are fsynced, get permissions ``mode`` (if given;
    mkstemp creates 0600), then ``os.replace`` puts them in place: a crash leaves either the old file or the
    new one, never a torn one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_savez(path: str | os.PathLike[str], arrays: dict[str, np.ndarray]) -> Path:
    """Write ``arrays`` as a compressed ``.npz`` at exactly ``path``, atomically. Returns the path."""
    path = Path(path)
    with _atomic_binary(path) as fh:
        np.savez_compressed(fh, **arrays)
    return path


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` at exactly ``path``, atomically, readable by others (0644). Returns the path."""
    path = Path(path)
    with _atomic_binary(path, mode=0o644) as fh:  # these files are meant to be shared
        fh.write(data)
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 ``text`` at exactly ``path``, atomically (see :func:`atomic_write_bytes`)."""
    return atomic_write_bytes(path, text.encode("utf-8"))
