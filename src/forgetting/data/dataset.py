"""The dataset containers every loader returns.

A dataset is tensors on the CPU: images ``uint8 [N, C, H, W]`` and either labels ``int64 [N]``
(classification) or masks ``int64 [N, H, W]`` (segmentation), plus class names and named splits. A
:class:`Split` is the in-memory :class:`~forgetting.data.source.DataSource` of the loop's fast path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from forgetting.data.source import TensorSource
from forgetting.exceptions import InputError, UnknownNameError

Task = Literal["classification", "segmentation"]


@dataclass(frozen=True)
class Split(TensorSource):
    """One labelled split of a dataset: a :class:`~forgetting.data.source.TensorSource` whose targets are
    always present.

    Attributes:
        images: ``uint8 [N, C, H, W]``.
        targets: ``int64 [N]`` class ids (classification) or ``int64 [N, H, W]`` masks (segmentation).
    """

    images: torch.Tensor
    targets: torch.Tensor

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise InputError(
                f"images must be uint8 [N, C, H, W], got {self.images.dtype} {tuple(self.images.shape)}"
            )
        if self.targets is None or self.targets.dtype != torch.int64:
            raise InputError(f"targets must be int64, got {getattr(self.targets, 'dtype', None)}")
        if self.targets.shape[0] != self.images.shape[0]:
            raise InputError(
                f"images and targets disagree on N: {self.images.shape[0]} vs {self.targets.shape[0]}"
            )

    @property
    def labels(self) -> torch.Tensor:
        """Alias of ``targets`` (reads naturally for classification)."""
        return self.targets

    def subset(self, indices: torch.Tensor | np.ndarray | Sequence[int]) -> Split:
        """The elements at ``indices`` (int64 ``[M]``), as a new split."""
        idx = self._index(indices)
        return Split(self.images[idx], self.targets[idx.to(self.targets.device)])

    def to(self, device: torch.device) -> Split:
        if self.images.device == device and self.targets.device == device:
            return self
        return Split(self.images.to(device), self.targets.to(device))


@dataclass(frozen=True)
class Dataset:
    """A named dataset with its splits.

    Attributes:
        name: registry name, e.g. ``"mnist-5k"``.
        classes: class names; ``len(classes)`` is the number of classes.
        splits: at least ``"train"`` and ``"test"``.
        task: ``"classification"`` or ``"segmentation"``.
        source: where the data was read from (a path or a package name).
    """

    name: str
    classes: tuple[str, ...]
    splits: dict[str, Split]
    task: Task = "classification"
    source: str = ""
    meta: dict[str, object] = field(default_factory=dict)

    @property
    def train(self) -> Split:
        """The ``train`` split (the pool of an active-learning run)."""
        return self.splits["train"]

    @property
    def test(self) -> Split:
        """The ``test`` split (in distribution)."""
        return self.splits["test"]

    @property
    def num_classes(self) -> int:
        """The number of classes, ``len(classes)``."""
        return len(self.classes)

    @property
    def in_channels(self) -> int:
        """Channels of the images (``C`` of ``[N, C, H, W]``): 1 for grayscale, 3 for RGB."""
        return int(self.train.images.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        """``(H, W)`` of the images."""
        return int(self.train.images.shape[2]), int(self.train.images.shape[3])

    def split(self, name: str) -> Split:
        """A split by name; ``"all"`` concatenates every split (used for domain-shift test sets)."""
        if name == "all":
            parts = list(self.splits.values())
            return Split(torch.cat([p.images for p in parts]), torch.cat([p.targets for p in parts]))
        if name not in self.splits:
            raise UnknownNameError(
                f"dataset {self.name!r} has no split {name!r}; splits: {sorted(self.splits)}"
            )
        return self.splits[name]
