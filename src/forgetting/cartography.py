"""The dataset-cartography exchange format, so that data-map tools read our training dynamics.

Dataset cartography (Swayamdipta et al., 2020; ``allenai/cartography``) logs each sample's logits after
every training epoch and plots confidence against variability. Its reader,
``cartography.selection.selection_utils.read_training_dynamics(model_dir)``, reads::

    <model_dir>/training_dynamics/dynamics_epoch_0.jsonl
    <model_dir>/training_dynamics/dynamics_epoch_1.jsonl
    ...

one JSON object per line and sample: ``{"guid": <id>, "logits_epoch_<e>": [<K floats>], "gold": <class id>}``.
The reader takes the number of epochs from the number of files in that folder, reads ``e = 0, 1, ...``,
and appends each file's logits to the guids of file 0, so every file must list every sample and the folder
must hold nothing else. :class:`CartographyWriter` writes exactly that from the logits an
:class:`~forgetting.observe.ObservationCallback` computes (its ``on_logits`` hook)::

    writer = CartographyWriter("runs/mnist", n=len(train_images))
    observe = ObservationCallback(train_images, train_labels, on_logits=writer)
    fit(model, train, config, callbacks=[observe])
    writer.close()                       # writes the last epoch's file

File ``e`` holds the ``e``-th observed epoch counted from 0 (with ``every=1``: training epoch ``e + 1``);
:attr:`CartographyWriter.epochs` maps files to training epochs. With a step cadence the last observation
of each epoch is written. :func:`read_cartography` reads the folder back the way the reader does.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from forgetting._io import atomic_write_text
from forgetting.exceptions import ConfigError, ForgettingError

__all__ = ["DYNAMICS_DIR", "CartographyWriter", "epoch_file", "read_cartography"]

log = logging.getLogger(__name__)

#: The folder under the model directory that cartography's reader looks in.
DYNAMICS_DIR = "training_dynamics"


def epoch_file(directory: str | os.PathLike[str], e: int) -> Path:
    """``<directory>/training_dynamics/dynamics_epoch_<e>.jsonl``."""
    return Path(directory) / DYNAMICS_DIR / f"dynamics_epoch_{e}.jsonl"


class CartographyWriter:
    """Write per-epoch logits as cartography JSONL; usable as an ``ObservationCallback(on_logits=...)``.

    Args:
        directory: the model directory; files go to ``<directory>/training_dynamics/``.
        n: the number of samples observed (rows ``0..n-1``); default ``len(ids)`` or ``len(gold)``.
        ids: ``[n]`` guids (ints or strings); default the row index.
        gold: int64 ``[n]`` gold labels; default the targets of the observed batches (the observation must
            then carry targets).
        overwrite: replace the ``dynamics_epoch_*.jsonl`` files of an earlier run; without it a non-empty
            ``training_dynamics`` folder is an error (the reader would mix the runs).

    The logits of an epoch are gathered on their device (float32 ``[n, K]``) and copied to the host once,
    when the next epoch's first batch arrives or at :meth:`flush` / :meth:`close`.

    Raises:
        ConfigError: the folder holds other files, the logits are not ``[B, K]``, no gold labels are known,
            or an epoch did not observe every sample (a subsampled observation: the reader needs all).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        n: int | None = None,
        *,
        ids: Sequence[Any] | np.ndarray | None = None,
        gold: Sequence[int] | np.ndarray | torch.Tensor | None = None,
        overwrite: bool = False,
    ) -> None:
        self.directory = Path(directory)
        self.folder = self.directory / DYNAMICS_DIR
        gold_t = None if gold is None else torch.as_tensor(np.asarray(gold), dtype=torch.int64).reshape(-1)
        sizes = {name: len(v) for name, v in (("ids", ids), ("gold", gold_t)) if v is not None}
        if n is None:
            if not sizes:
                raise ConfigError("CartographyWriter needs n (the number of samples), ids or gold")
            n = next(iter(sizes.values()))
        if any(size != n for size in sizes.values()):
            raise ConfigError(f"CartographyWriter: n={n} but {sizes}")
        self.n = int(n)
        self._ids: list[Any] = list(range(self.n)) if ids is None else np.asarray(ids).tolist()
        self._gold = gold_t
        self._prepare_folder(overwrite)
        self.files: list[Path] = []
        self.epochs: list[int] = []
        self._epoch: int | None = None
        self._logits: torch.Tensor | None = None
        self._targets: torch.Tensor | None = None
        self._seen: torch.Tensor | None = None

    def _prepare_folder(self, overwrite: bool) -> None:
        if not self.folder.exists():
            return
        ours = sorted(self.folder.glob("dynamics_epoch_*.jsonl"))
        others = sorted(p.name for p in self.folder.iterdir() if p not in ours)
        if others:
            raise ConfigError(
                f"{self.folder} holds other files ({', '.join(others[:5])}); cartography's reader counts "
                "every file there as an epoch. Write to an empty directory."
            )
        if ours and not overwrite:
            raise ConfigError(
                f"{self.folder} already holds {len(ours)} dynamics_epoch_*.jsonl files; pass overwrite=True "
                "to replace them, or write to another directory"
            )
        for path in ours:
            path.unlink()

    # ------------------------------------------------------------------ the on_logits hook
    def __call__(
        self, idx: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor | None, epoch: int
    ) -> None:
        """Record one batch: rows ``idx`` (int64 ``[B]``), ``logits`` ``[B, K]``, ``targets`` int64 ``[B]``
        or ``None``, at training epoch ``epoch``. No host sync."""
        if logits.ndim != 2:
            raise ConfigError(
                f"cartography records classification logits [B, K]; got {tuple(logits.shape)} (a "
                "segmentation model's per-pixel logits have no cartography format)"
            )
        if targets is None and self._gold is None:
            raise ConfigError(
                "cartography needs the gold labels: observe the set with its targets, or give "
                "CartographyWriter(gold=...)"
            )
        if self._epoch is not None and epoch != self._epoch:
            self.flush()
        self._epoch = int(epoch)
        device = logits.device
        if self._logits is None or self._logits.device != device or self._logits.shape[1] != logits.shape[1]:
            with torch.inference_mode(False):
                self._logits = torch.zeros(self.n, logits.shape[1], dtype=torch.float32, device=device)
                self._seen = torch.zeros(self.n, dtype=torch.bool, device=device)
                self._targets = torch.zeros(self.n, dtype=torch.int64, device=device)
        assert self._seen is not None and self._targets is not None
        rows = idx.to(device=device, dtype=torch.int64)
        self._logits.index_copy_(0, rows, logits.detach().float())
        self._seen.index_fill_(0, rows, True)
        if targets is not None:
            self._targets.index_copy_(0, rows, targets.to(device=device, dtype=torch.int64))

    # ------------------------------------------------------------------ files
    def flush(self) -> Path | None:
        """Write the current epoch's file (if any batch arrived since the last one). Returns its path."""
        if self._epoch is None or self._logits is None or self._seen is None or self._targets is None:
            return None
        seen = self._seen.cpu()
        if not bool(seen.all()):
            missing = int((~seen).sum())
            raise ConfigError(
                f"epoch {self._epoch} observed {self.n - missing} of {self.n} samples; cartography's reader "
                "needs every sample in every epoch file, so observe without subsample"
            )
        logits = self._logits.cpu().tolist()
        gold = (self._gold if self._gold is not None else self._targets.cpu()).tolist()
        e = len(self.files)
        key = f"logits_epoch_{e}"
        lines = [
            json.dumps({"guid": guid, key: row, "gold": label})
            for guid, row, label in zip(self._ids, logits, gold, strict=True)
        ]
        path = atomic_write_text(epoch_file(self.directory, e), "\n".join(lines) + "\n")
        self.files.append(path)
        self.epochs.append(self._epoch)
        log.debug("cartography: epoch %d -> %s", self._epoch, path)
        self._epoch = None
        self._seen.zero_()
        return path

    def close(self) -> None:
        """Write the last epoch's file."""
        self.flush()

    def __enter__(self) -> CartographyWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.close()

    def __repr__(self) -> str:
        return f"CartographyWriter({str(self.directory)!r}, n={self.n}, files={len(self.files)})"


def read_cartography(directory: str | os.PathLike[str]) -> dict[Any, dict[str, Any]]:
    """Read ``<directory>/training_dynamics/`` as cartography's reader does: guid -> ``{"gold": int,
    "logits": [[K floats] per epoch]}``, epochs in file order.

    Raises:
        ForgettingError: the folder is missing or empty, a line lacks a documented key, or a later file
            names a guid that file 0 does not.
    """
    folder = Path(directory) / DYNAMICS_DIR
    if not folder.is_dir():
        raise ForgettingError(f"no cartography training dynamics at {folder}")
    n_epochs = sum(1 for p in folder.iterdir() if p.is_file())
    if n_epochs == 0:
        raise ForgettingError(f"{folder} holds no dynamics_epoch_*.jsonl files")
    out: dict[Any, dict[str, Any]] = {}
    for e in range(n_epochs):
        path = epoch_file(directory, e)
        if not path.is_file():
            raise ForgettingError(f"{folder} holds {n_epochs} files but not {path.name}")
        key = f"logits_epoch_{e}"
        with path.open(encoding="utf-8") as fh:
            for no, line in enumerate(fh, 1):
                record = json.loads(line)
                if not {"guid", key, "gold"} <= set(record):
                    raise ForgettingError(
                        f"{path}:{no}: expected the keys guid, {key}, gold; got {sorted(record)}"
                    )
                guid = record["guid"]
                if guid not in out:
                    if e:
                        raise ForgettingError(f"{path}:{no}: guid {guid!r} is not in dynamics_epoch_0.jsonl")
                    out[guid] = {"gold": record["gold"], "logits": []}
                out[guid]["logits"].append(record[key])
    return out
