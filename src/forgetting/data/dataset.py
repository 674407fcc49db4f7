"""The dataset containers every loader returns.

A dataset is tensors on the CPU: images ``uint8 [N, C, H, W]`` and either labels ``int64 [N]``
(classification) or masks ``int64 [N, H, W]`` (segmentation), plus class names and named splits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch

Task = Literal["classification", "segmentation"]


@dataclass(frozen=True)
class Split:
    """One split of a dataset.

    Attributes:
        images: ``uint8 [N, C, H, W]``.
        targets: ``int64 [N]`` class ids (classification) or ``int64 [N, H, W]`` masks (segmentation).
    """

    images: torch.Tensor
    targets: torch.Tensor

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(
                f"images must be uint8 [N, C, H, W], got {self.images.dtype} {tuple(self.images.shape)}"
            )
        if self.targets.dtype != torch.int64:
            raise ValueError(f"targets must be int64, got {self.targets.dtype}")
        if self.targets.shape[0] != self.images.shape[0]:
            raise ValueError(
                f"images and targets disagree on N: {self.images.shape[0]} vs {self.targets.shape[0]}"
            )

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def labels(self) -> torch.Tensor:
        """Alias of ``targets`` (reads naturally for classification)."""
        return self.targets

    def subset(self, indices: torch.Tensor) -> Split:
        """The elements at ``indices`` (int64 ``[M]``), as a new split."""
        return Split(self.images[indices], self.targets[indices])


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
        return self.splits["train"]

    @property
    def test(self) -> Split:
        return self.splits["test"]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_channels(self) -> int:
        return int(self.train.images.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.train.images.shape[2]), int(self.train.images.shape[3])

    def split(self, name: str) -> Split:
        """A split by name; ``"all"`` concatenates every split (used for domain-shift test sets)."""
        if name == "all":
            parts = list(self.splits.values())
            return Split(torch.cat([p.images for p in parts]), torch.cat([p.targets for p in parts]))
        if name not in self.splits:
            raise KeyError(f"dataset {self.name!r} has no split {name!r}; splits: {sorted(self.splits)}")
        return self.splits[name]
