"""Tensor helpers below every other module: the model's input conversion, batch slices, a model's device.

They live apart from :mod:`forgetting.inference` so that the data layer (:mod:`forgetting.data.source`) can
use them without importing the inference code that reads data sources.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

__all__ = ["iter_batches", "model_device", "to_input"]


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
