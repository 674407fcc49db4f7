"""Choosing the compute device, and whether a run's data can stay on it."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import torch

from forgetting.exceptions import ConfigError

__all__ = ["DATA_MEMORY_FRACTION", "DEVICE_CHOICES", "data_device", "fits_on_device", "resolve_device"]

logger = logging.getLogger(__name__)

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")

#: Data is kept on an accelerator only when it takes at most this share of the memory still free there,
#: leaving the rest to the model, its activations and the optimizer.
DATA_MEMORY_FRACTION = 0.5


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


def free_memory(device: torch.device) -> int | None:
    """Bytes still free on an accelerator (``None`` for the CPU, or when the backend cannot tell)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type == "mps":
        mps = getattr(torch, "mps", None)
        limit = getattr(mps, "recommended_max_memory", None)
        used = getattr(mps, "driver_allocated_memory", None)
        if limit is None or used is None:
            return None
        return max(0, int(limit()) - int(used()))
    return None


def fits_on_device(nbytes: int, device: torch.device, fraction: float = DATA_MEMORY_FRACTION) -> bool:
    """Whether ``nbytes`` of tensors may live on ``device``: always on the CPU (and when an accelerator
    cannot report its free memory), else when they take at most ``fraction`` of its free memory."""
    if nbytes <= 0 or device.type == "cpu":
        return True
    free = free_memory(device)
    return free is None or nbytes <= fraction * free


def data_device(
    tensors: Iterable[torch.Tensor], device: torch.device, fraction: float = DATA_MEMORY_FRACTION
) -> torch.device:
    """Where to keep ``tensors`` for computing on ``device``: ``device`` itself when they fit
    (:func:`fits_on_device`), else the CPU (and every batch is copied to ``device`` when it is used)."""
    nbytes = sum(int(t.nbytes) for t in tensors if t.device != device)
    if fits_on_device(nbytes, device, fraction):
        return device
    logger.info(
        "%.1f MiB of data do not fit on %s (limit: %.0f%% of its free memory); kept in host memory and "
        "copied per batch",
        nbytes / 2**20,
        device,
        100 * fraction,
    )
    return torch.device("cpu")
