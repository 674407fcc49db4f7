"""Data sources: the rows a round reads (the pool, the labelled set, an evaluation set).

Two kinds, one interface (:class:`DataSource`):

* :class:`TensorSource` (and its labelled subclass :class:`~forgetting.data.dataset.Split`): images in memory
  as ``uint8 [N, C, H, W]``, scaled to ``[0, 1]`` per batch, indexed directly on the device: the fast path of
  every built-in dataset;
* :class:`DatasetSource`: any ``torch.utils.data.Dataset`` whose items are ``(x, y)`` (``y`` a class id) or
  ``(x, mask)``, read lazily through a ``DataLoader`` (workers, pinned memory on a GPU) with the user's
  transforms. ``x`` is what the model takes (float ``[C, H, W]`` after the transform, normalisation
  included; a ``uint8`` image is scaled to ``[0, 1]`` like the built-in data).

Memory of a pass is bounded by its batch: nothing here holds a tensor of all N inputs of a lazy source.
Both kinds give the same batches for the same data, so the counts of an observation pass agree.

>>> pool = DatasetSource(my_dataset, transform=normalise, targets=labels)   # doctest: +SKIP
>>> for x, y in pool.batches(device, 256):                                   # doctest: +SKIP
...     ...
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from forgetting._tensors import iter_batches, to_input
from forgetting.exceptions import ConfigError

__all__ = ["DataSource", "DatasetSource", "Rows", "TensorSource", "as_rows"]

logger = logging.getLogger(__name__)

#: Row indices: an int64 array or tensor, or any integer sequence.
Rows = np.ndarray | torch.Tensor | Sequence[int]
Transform = Callable[[torch.Tensor], torch.Tensor]


def as_rows(rows: Rows) -> np.ndarray:
    """Row indices as a host ``int64 [M]`` array."""
    if isinstance(rows, torch.Tensor):
        return rows.detach().cpu().numpy().astype(np.int64, copy=False)
    out = np.asarray(rows, dtype=np.int64)
    if out.ndim != 1:
        raise ConfigError(f"row indices must be one-dimensional, got shape {out.shape}")
    return out


class DataSource(ABC):
    """What a round reads: ``N`` rows of an input and, where known, a target (class id or mask).

    Implementations give batches on a device (:meth:`batches`), subsets by row (:meth:`subset`), targets
    (:meth:`read_targets`) and a torch ``Dataset`` view for user training loops (:meth:`torch_dataset`).
    """

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def subset(self, rows: Rows) -> DataSource:
        """The rows ``rows`` (int64 ``[M]`` indices into this source), in that order."""

    @abstractmethod
    def batches(
        self,
        device: torch.device,
        batch_size: int,
        *,
        rows: Rows | None = None,
        targets: bool = True,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        """``(x, y)`` batches in row order: ``x`` float ``[B, C, H, W]`` on ``device`` (eval inputs, never
        augmented), ``y`` int64 ``[B]`` / ``[B, H, W]`` on ``device`` or ``None`` (``targets=False``, or a
        source without targets). ``rows`` restricts the pass to those rows (int64 ``[M]``)."""

    @abstractmethod
    def read_targets(self, rows: Rows | None = None) -> torch.Tensor:
        """The targets of ``rows`` (all rows by default) on the host: int64 ``[M]`` or ``[M, H, W]``.

        Raises:
            ConfigError: the source has no targets.
        """

    @property
    @abstractmethod
    def has_targets(self) -> bool:
        """Whether :meth:`read_targets` and ``batches(targets=True)`` give targets."""

    @property
    @abstractmethod
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one input, ``(C, H, W)``."""

    @property
    def eval_input_shape(self) -> tuple[int, ...] | None:
        """The per-sample input shape that the default eval batch size is sized for
        (:func:`forgetting.performance.inference_batch_size`): :attr:`input_shape`, or ``None`` for a source
        whose inputs are not images (then the device's default batch is used)."""
        return self.input_shape

    def as_tensors(self) -> tuple[torch.Tensor, torch.Tensor | None] | None:
        """``(images uint8 [N, C, H, W], targets or None)`` when the rows are tensors in memory (the fast
        path: indexed directly, no loader), else ``None``."""
        return None

    def to(self, device: torch.device) -> DataSource:
        """This source with its in-memory tensors on ``device`` (lazy sources are returned unchanged)."""
        return self

    def torch_dataset(self, *, train: bool = True) -> TorchDataset:
        """A ``torch.utils.data.Dataset`` of ``(x float [C, H, W], y)`` items over these rows, for a user's
        training loop; ``train=True`` applies the training transform where the source has one."""
        return _RowsDataset(self, train=train)

    def _item(self, row: int, *, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """One ``(x, y)`` item for :meth:`torch_dataset`."""
        x, y = next(iter(self.batches(torch.device("cpu"), 1, rows=[row])))
        if y is None:
            raise ConfigError("this source has no targets to train on")
        return x[0], y[0]


class _RowsDataset(TorchDataset):
    """A torch ``Dataset`` view of a :class:`DataSource` (items ``(x, y)``)."""

    def __init__(self, source: DataSource, *, train: bool) -> None:
        self.source = source
        self.train = train

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.source._item(int(index), train=self.train)


@dataclass(frozen=True)
class TensorSource(DataSource):
    """Rows in memory: images ``uint8 [N, C, H, W]`` (scaled to ``[0, 1]`` per batch) and optional targets
    (int64 ``[N]`` class ids or ``[N, H, W]`` masks), on any device.

    This is the fast path: batches are slices of the tensors (``index_select`` for row subsets), with no
    DataLoader and no host copy when the tensors live on the model's device.
    """

    images: torch.Tensor
    targets: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ConfigError(
                f"images must be uint8 [N, C, H, W], got {self.images.dtype} {tuple(self.images.shape)}"
            )
        if self.targets is not None:
            if self.targets.dtype != torch.int64:
                raise ConfigError(f"targets must be int64, got {self.targets.dtype}")
            if self.targets.shape[0] != self.images.shape[0]:
                raise ConfigError(
                    f"images and targets disagree on N: {self.images.shape[0]} vs {self.targets.shape[0]}"
                )

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def has_targets(self) -> bool:
        return self.targets is not None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.images.shape[1:])

    def as_tensors(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.images, self.targets

    def _index(self, rows: Rows) -> torch.Tensor:
        if isinstance(rows, torch.Tensor):
            return rows.to(device=self.images.device, dtype=torch.int64)
        return torch.from_numpy(as_rows(rows)).to(self.images.device)

    def subset(self, rows: Rows) -> TensorSource:
        idx = self._index(rows)
        return TensorSource(self.images[idx], None if self.targets is None else self.targets[idx])

    def to(self, device: torch.device) -> TensorSource:
        if self.images.device == device and (self.targets is None or self.targets.device == device):
            return self
        return TensorSource(self.images.to(device), None if self.targets is None else self.targets.to(device))

    def batches(
        self,
        device: torch.device,
        batch_size: int,
        *,
        rows: Rows | None = None,
        targets: bool = True,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        want = targets and self.targets is not None
        idx = None if rows is None else self._index(rows)
        n = len(self) if idx is None else int(idx.shape[0])
        for sl in iter_batches(n, batch_size):
            if idx is None:
                x = self.images[sl]
                y = self.targets[sl] if want else None  # type: ignore[index]
            else:
                x = self.images.index_select(0, idx[sl])
                y = self.targets.index_select(0, idx[sl]) if want else None  # type: ignore[union-attr]
            yield to_input(x, device), None if y is None else y.to(device, non_blocking=True)

    def read_targets(self, rows: Rows | None = None) -> torch.Tensor:
        if self.targets is None:
            raise ConfigError("this in-memory source has no targets")
        t = self.targets if rows is None else self.targets[self._index(rows).to(self.targets.device)]
        return t.cpu()

    def _item(self, row: int, *, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        if self.targets is None:
            raise ConfigError("this in-memory source has no targets to train on")
        return to_input(self.images[row : row + 1])[0].cpu(), self.targets[row].cpu()


class DatasetSource(DataSource):
    """Rows of a ``torch.utils.data.Dataset``, read lazily through a ``DataLoader``.

    Args:
        dataset: items ``(x, y)``: ``x`` a tensor ``[C, H, W]`` (float in the model's input space, or
            ``uint8``, which is scaled to ``[0, 1]``) or anything ``transform`` turns into one; ``y`` an int
            class id, an int64 ``[H, W]`` mask, or ``None``-free targets of any integer dtype.
        transform: the eval transform applied to ``x`` in every pass (normalisation, resizing). Never
            augments: observation and evaluation passes see exactly this.
        train_transform: the transform of :meth:`torch_dataset` with ``train=True`` (augmentation for a user
            loop that reads items); default ``transform``.
        targets: the targets of every row (int64 ``[N]`` labels or ``[N, H, W]`` masks), when known without
            reading the inputs. Without them, :meth:`read_targets` reads the items of the rows it is asked
            for (one pass over them).
        has_targets: whether the items carry targets (``False``: an unlabelled pool; ``y`` is ignored).
        num_workers, pin_memory: DataLoader settings of the passes; ``pin_memory`` defaults to ``True`` for
            CUDA devices.
        rows: restrict to these row indices of ``dataset`` (int64 ``[M]``); default every row.
    """

    def __init__(
        self,
        dataset: TorchDataset,
        *,
        transform: Transform | None = None,
        train_transform: Transform | None = None,
        targets: torch.Tensor | np.ndarray | None = None,
        has_targets: bool = True,
        num_workers: int = 0,
        pin_memory: bool | None = None,
        rows: Rows | None = None,
    ) -> None:
        try:
            size = len(dataset)  # type: ignore[arg-type]
        except TypeError as err:
            raise ConfigError(
                f"a DatasetSource needs a map-style torch Dataset with __len__ and __getitem__; got "
                f"{type(dataset).__name__}"
            ) from err
        if num_workers < 0:
            raise ConfigError(f"num_workers must be >= 0, got {num_workers}")
        self.dataset = dataset
        self.transform = transform
        self.train_transform = train_transform
        self.num_workers = int(num_workers)
        self.pin_memory = pin_memory
        self._has_targets = bool(has_targets)
        self._rows = np.arange(size, dtype=np.int64) if rows is None else as_rows(rows)
        if self._rows.size and (self._rows.min() < 0 or self._rows.max() >= size):
            raise ConfigError(f"rows must lie in [0, {size}); got [{self._rows.min()}, {self._rows.max()}]")
        all_targets = None
        if targets is not None:
            all_targets = torch.as_tensor(targets)
            if all_targets.dtype.is_floating_point or int(all_targets.shape[0]) != size:
                raise ConfigError(
                    f"targets must be integer with one entry per item of the dataset ({size}); got "
                    f"{all_targets.dtype} {tuple(all_targets.shape)}"
                )
            all_targets = all_targets.to(torch.int64)
        self._all_targets = all_targets
        self._input_shape: tuple[int, ...] | None = None

    # ------------------------------------------------------------------ interface
    def __len__(self) -> int:
        return int(self._rows.size)

    def __repr__(self) -> str:
        return f"DatasetSource({type(self.dataset).__name__}, rows={len(self)}, workers={self.num_workers})"

    @property
    def has_targets(self) -> bool:
        return self._has_targets

    @property
    def input_shape(self) -> tuple[int, ...]:
        if self._input_shape is None:
            if not len(self):
                raise ConfigError("an empty DatasetSource has no input shape")
            x, _ = self._read(int(self._rows[0]), self.transform)
            self._input_shape = tuple(int(d) for d in x.shape)
        return self._input_shape

    def subset(self, rows: Rows) -> DatasetSource:
        out = DatasetSource.__new__(DatasetSource)
        out.__dict__.update(self.__dict__)
        out._rows = self._rows[as_rows(rows)]
        return out

    def batches(
        self,
        device: torch.device,
        batch_size: int,
        *,
        rows: Rows | None = None,
        targets: bool = True,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        base = self._rows if rows is None else self._rows[as_rows(rows)]
        want = targets and self._has_targets
        pin = device.type == "cuda" if self.pin_memory is None else self.pin_memory
        # uint8 inputs travel as uint8 (a quarter of the bytes) and are scaled once per batch on the device.
        loader = DataLoader(
            _Items(self, base, self.transform, want, scale=False),
            batch_size=batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            pin_memory=pin,
            persistent_workers=False,
            generator=torch.Generator(),  # a private generator: a pass draws nothing from the global RNG
            collate_fn=_collate_unscaled,
        )
        for x, y in loader:
            x = to_input(x, device) if x.dtype == torch.uint8 else x.to(device, non_blocking=True)
            yield x, (y.to(device, non_blocking=True) if want else None)

    def read_targets(self, rows: Rows | None = None) -> torch.Tensor:
        if not self._has_targets:
            raise ConfigError("this dataset source was declared without targets (has_targets=False)")
        base = self._rows if rows is None else self._rows[as_rows(rows)]
        if self._all_targets is not None:
            return self._all_targets[torch.from_numpy(base)]
        parts = [y for _, y in _TargetsOnly(self, base)]
        if not parts:
            return torch.zeros(0, dtype=torch.int64)
        return torch.stack(parts)

    def torch_dataset(self, *, train: bool = True) -> TorchDataset:
        transform = self.train_transform if train and self.train_transform is not None else self.transform
        return _Items(self, self._rows, transform, True)

    # ------------------------------------------------------------------ items
    def _read(
        self, row: int, transform: Transform | None, item: Any = None, *, scale: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if item is None:
            item = self.dataset[row]
        if not isinstance(item, tuple | list) or len(item) < 1:
            raise ConfigError(
                f"items of {type(self.dataset).__name__} must be (x, y) pairs; item {row} is "
                f"{type(item).__name__}"
            )
        x = item[0]
        if transform is not None:
            x = transform(x)
        if not isinstance(x, torch.Tensor):
            raise ConfigError(
                f"item {row} of {type(self.dataset).__name__}: x must be a tensor after the transform, got "
                f"{type(x).__name__}; give a transform that returns a tensor [C, H, W]"
            )
        if scale and x.dtype == torch.uint8:
            x = x.float().div_(255.0)
        if not self._has_targets:
            return x, torch.zeros((), dtype=torch.int64)
        if len(item) < 2:
            raise ConfigError(
                f"item {row} of {type(self.dataset).__name__} has no target; return (x, y), or declare the "
                "source unlabelled with has_targets=False"
            )
        return x, torch.as_tensor(item[1], dtype=torch.int64)


class _Items(TorchDataset):
    """The DataLoader-facing view: item ``k`` is row ``rows[k]`` of the source's dataset, transformed;
    ``uint8`` inputs scaled to ``[0, 1]`` floats, or left ``uint8`` with ``scale=False`` (for
    :func:`_collate_unscaled`, which the passes scale per batch)."""

    def __init__(
        self,
        source: DatasetSource,
        rows: np.ndarray,
        transform: Transform | None,
        targets: bool,
        *,
        scale: bool = True,
    ) -> None:
        self.source = source
        self.rows = rows
        self.transform = transform
        self.targets = targets
        self.scale = scale

    def __len__(self) -> int:
        return int(self.rows.size)

    def __getitem__(self, k: int) -> tuple[torch.Tensor, Any]:
        x, y = self.source._read(int(self.rows[k]), self.transform, scale=self.scale)
        return x, y

    def __getitems__(self, ks: list[int]) -> list[tuple[torch.Tensor, Any]]:
        """The batched fetch of ``torch.utils.data``: forwarded to the user's dataset when it implements
        ``__getitems__`` (one read per batch, e.g. one slice of a memory map), else one item at a time."""
        rows = [int(self.rows[k]) for k in ks]
        batched = getattr(self.source.dataset, "__getitems__", None)
        if batched is None:
            return [self.source._read(row, self.transform, scale=self.scale) for row in rows]
        items = batched(rows)
        return [
            self.source._read(row, self.transform, item, scale=self.scale)
            for row, item in zip(rows, items, strict=True)
        ]


def _collate_unscaled(batch: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack unscaled items: ``uint8 [B, C, H, W]`` when every input is ``uint8`` (scaled later, per batch),
    else float, scaling the ``uint8`` ones first (a dataset that mixes both)."""
    xs = [x for x, _ in batch]
    if len({x.dtype for x in xs}) > 1:
        xs = [to_input(x) if x.dtype == torch.uint8 else x for x in xs]
    return torch.stack(xs), torch.stack([y for _, y in batch])


class _TargetsOnly:
    """Iterates the targets of ``rows`` (reads each item once; used when no ``targets`` were given)."""

    def __init__(self, source: DatasetSource, rows: np.ndarray) -> None:
        self.source = source
        self.rows = rows

    def __iter__(self) -> Iterator[tuple[None, torch.Tensor]]:
        for row in self.rows:
            item = self.source.dataset[int(row)]
            yield None, torch.as_tensor(item[1], dtype=torch.int64)
