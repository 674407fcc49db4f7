"""One exclusive lock per directory: run directories, labelling projects and their report folders.

The lock is an advisory ``flock`` on ``<directory>/.lock`` (POSIX). The kernel releases it when the holding
process ends, however it ends (SIGKILL included), so a lock left by a killed process is never in the way:
the next process simply takes it over. While held, the file records the holder (PID, host, command line,
start time), so a second process can say who is in the way. On systems without ``fcntl`` (Windows) there is
no lock.

Re-entrant within a process: a directory locked by this process can be locked again (nested ``with``
blocks, e.g. an import inside a project creation).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import os
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from forgetting.exceptions import DirectoryInUseError, ForgettingError

__all__ = ["LOCK_FILE", "LockHolder", "directory_lock", "lock_holder"]

logger = logging.getLogger(__name__)

LOCK_FILE = ".lock"

_HELD: dict[str, int] = {}  # resolved lock path -> nesting depth, for this process


@dataclass(frozen=True)
class LockHolder:
    """Who holds (or last held) a directory lock, as recorded in its lock file."""

    pid: int | None
    host: str | None = None
    command: str | None = None
    since: str | None = None

    def describe(self) -> str:
        """``PID 123 on host h, `forgetting run ...`, since 2026-01-01T10:00:00+00:00``."""
        parts = [f"PID {self.pid}" if self.pid is not None else "an unknown process"]
        if self.host and self.host != socket.gethostname():
            parts[0] += f" on host {self.host}"
        if self.command:
            parts.append(f"`{self.command}`")
        if self.since:
            parts.append(f"since {self.since}")
        return ", ".join(parts)


def _parse_holder(text: str) -> LockHolder | None:
    text = text.strip()
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    pid = data.get("pid")
    return LockHolder(
        pid=pid if isinstance(pid, int) and not isinstance(pid, bool) else None,
        host=str(data["host"]) if data.get("host") else None,
        command=str(data["command"]) if data.get("command") else None,
        since=str(data["since"]) if data.get("since") else None,
    )


def lock_holder(directory: str | os.PathLike[str], lock_name: str = LOCK_FILE) -> LockHolder | None:
    """The holder recorded in ``directory``'s lock file (``None`` when there is none or it is blank).

    The record of a process that died without releasing the lock stays until the next holder overwrites it;
    whether the lock is actually held is only known by trying to take it (:func:`directory_lock`).
    """
    try:
        return _parse_holder(Path(directory, lock_name).read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return None


def _read_fd(fd: int) -> LockHolder | None:
    try:
        data = os.pread(fd, 4096, 0)
    except OSError:
        return None
    return _parse_holder(data.decode("utf-8", errors="replace"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


def _command_line() -> str:
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    if name == "__main__.py":  # python -m forgetting
        name = "python -m forgetting"
    argv = [name, *sys.argv[1:]]
    text = " ".join(argv)
    return text if len(text) <= 200 else text[:197] + "..."


@contextlib.contextmanager
def directory_lock(
    directory: str | os.PathLike[str],
    *,
    what: str,
    error: type[ForgettingError] = DirectoryInUseError,
    lock_name: str = LOCK_FILE,
) -> Iterator[Path]:
    """Hold the exclusive lock of ``directory`` (which must exist) for the ``with`` block.

    Args:
        directory: the directory to lock.
        what: what the lock protects, for the message (``"a run"``, ``"an import or query"``).
        error: the exception raised when another process holds the lock (a :class:`DirectoryInUseError`
            subclass or any :class:`ForgettingError`).
        lock_name: the lock file's name inside ``directory``.

    Yields:
        The lock file's path.

    Raises:
        error: another process holds the lock; the message names its PID and command.
        ForgettingError: the lock file cannot be created (e.g. the directory is read-only).
    """
    path = Path(directory) / lock_name
    key = str(path.resolve())
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no advisory locks
        yield path
        return
    if key in _HELD:  # this process holds it already: nested use
        _HELD[key] += 1
        try:
            yield path
        finally:
            _HELD[key] -= 1
        return
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise ForgettingError(
            f"cannot create the lock file {path}: {exc.strerror or exc}; {Path(directory)} must be a "
            "writable directory"
        ) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # held by another process
            holder = _read_fd(fd)
            who = holder.describe() if holder is not None else "another process"
            stop = f" (or stop it: kill {holder.pid})" if holder is not None and holder.pid else ""
            raise error(
                f"{Path(directory)} is in use by another forgetting process ({what}: {who}); wait for it to "
                f"finish{stop}, or use another directory"
            ) from None
        except OSError as exc:  # e.g. ENOLCK on a file system without locks
            raise ForgettingError(f"cannot lock {path}: {exc.strerror or exc}") from None
        previous = _read_fd(fd)
        if previous is not None and previous.pid is not None and previous.pid != os.getpid():
            same_host = previous.host in (None, socket.gethostname())
            if same_host and not _alive(previous.pid):
                logger.info(
                    "%s: taking over the lock left by PID %d, which is no longer running",
                    directory,
                    previous.pid,
                )
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": _command_line(),
            "since": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode("utf-8"), 0)
        _HELD[key] = 1
        try:
            yield path
        finally:
            del _HELD[key]
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)  # released: no holder to name
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
