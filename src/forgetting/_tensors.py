"""Tensor helpers below every other module: the model's input conversion, batch slices, a model's device.

They live apart from :mod:`forgetting.inference` so that the data layer (:mod:`forgetting.data.source`) can
use them without importing the inference code that reads data sources.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

__all__ = ["class_counts", "iter_batches", "model_device", "to_input"]


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a parameterless module)."""
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def to_input(images: torch.Tensor, device: torch.device | None = None) -> torch.Tensor:
    """``uint8 [B, C, H, W]`` -> ``float32 [B, C, H, W]`` in ``[0, 1]`` on ``device``."""
    if device is not None:
        images = images.to(device, non_blocking=True)
    return images.float().div_(255.0)


def iter_batches(n: int, batch_size: int) -> Iterator[slice]:
    """Contiguous slices covering ``range(n)``."""
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


def class_counts(labels: torch.Tensor, num_classes: int, *, ignore_index: int | None = None) -> torch.Tensor:
    """How many elements of ``labels`` (integer, any shape, any device) hold each class id: int64 ``[K]`` on
    the labels' device. Values outside ``[0, K)`` and ``ignore_index`` count nothing (they are parked in one
    extra bin, so this is a single ``bincount`` without boolean indexing or a host sync)."""
    flat = labels.reshape(-1).to(torch.int64)
    valid = (flat >= 0) & (flat < num_classes)
    if ignore_index is not None:
        valid &= flat != ignore_index
    return torch.bincount(torch.where(valid, flat, num_classes), minlength=num_classes + 1)[:num_classes]
