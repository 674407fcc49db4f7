"""Choosing the compute device."""

from __future__ import annotations

import torch

from forgetting.exceptions import ConfigError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(name: str | torch.device | None = None) -> torch.device:
    """The device to run on.

    ``None`` or ``"auto"`` picks CUDA when available, then Apple MPS, then the CPU. Any other value is passed
    to :class:`torch.device` (``"cuda:1"`` works) and must name a device that is present.
    """
    if isinstance(name, torch.device):
        return name
    if name is None or name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(
            f"device: {name!r} is not a device; use one of {DEVICE_CHOICES} or e.g. 'cuda:1'"
        ) from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: 'cuda' was asked for but torch sees no CUDA device; use 'cpu' or 'auto'")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device: 'mps' was asked for but it is not available; use 'cpu' or 'auto'")
    return device
