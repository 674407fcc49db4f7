"""What the framework adapters share: importing a framework with an actionable error, turning the user's
data into a :class:`~forgetting.data.source.DataSource`, and the observation callbacks of a set."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any, Literal

import torch
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from forgetting.cartography import CartographyWriter
from forgetting.data.source import DatasetSource, DataSource, TensorSource
from forgetting.exceptions import ConfigError, MissingDependencyError
from forgetting.observe import ObservationCallback

__all__ = ["LogitsHook", "as_source", "observation_callback", "require"]

#: ``on_logits(idx, logits, targets, epoch)``: see :class:`~forgetting.observe.ObservationCallback`.
LogitsHook = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None, int], None]
Forward = Callable[[nn.Module, Any], torch.Tensor]


def require(module: str, extra: str, what: str) -> ModuleType:
    """Import ``module``, or raise :class:`MissingDependencyError` naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{what} needs the {module.split('.')[0]} package, which is not installed: "
            f"pip install 'forgetting[{extra}]'"
        ) from exc


def as_source(data: Any, *, transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> DataSource:
    """``data`` as a :class:`DataSource`: a source as it is; uint8 ``[N, C, H, W]`` images in memory; a
    ``DataLoader`` (its dataset, read in order with its ``num_workers``; its sampler and collate function
    are not used, so a shuffling or augmenting loader is read unshuffled, with ``transform`` only); any
    map-style ``Dataset`` of ``(x, y)`` items, read lazily with ``transform``."""
    if isinstance(data, DataSource):
        return data
    if isinstance(data, torch.Tensor):
        return TensorSource(data)
    if isinstance(data, DataLoader):
        return DatasetSource(data.dataset, transform=transform, num_workers=data.num_workers)
    if isinstance(data, TorchDataset) or (hasattr(data, "__len__") and hasattr(data, "__getitem__")):
        return DatasetSource(data, transform=transform)
    raise ConfigError(
        f"cannot observe a {type(data).__name__}: give a torch Dataset of (x, y) items, a DataLoader over "
        "one, uint8 images [N, C, H, W] or a forgetting DataSource"
    )


def _compose(hooks: Sequence[LogitsHook]) -> LogitsHook | None:
    if not hooks:
        return None
    if len(hooks) == 1:
        return hooks[0]

    def both(idx: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor | None, epoch: int) -> None:
        for hook in hooks:
            hook(idx, logits, targets, epoch)

    return both


def observation_callback(
    source: DataSource,
    targets: torch.Tensor | Literal["source"] | None,
    *,
    cartography: str | os.PathLike[str] | CartographyWriter | None,
    on_logits: LogitsHook | None,
    **options: Any,
) -> tuple[ObservationCallback, CartographyWriter | None]:
    """The :class:`ObservationCallback` of one set, with a cartography writer (``cartography``, or one
    writing to the directory it names) chained after ``on_logits``."""
    writer = None
    hooks: list[LogitsHook] = [] if on_logits is None else [on_logits]
    if cartography is not None:
        if isinstance(cartography, CartographyWriter):
            writer = cartography
            if writer.n != len(source):
                raise ConfigError(f"the CartographyWriter has n={writer.n}; the set has {len(source)} rows")
        else:
            if targets is None:
                raise ConfigError(
                    "cartography needs the gold labels of the observed set: pass targets (a tensor, or "
                    "'source' for the labels its items carry)"
                )
            writer = CartographyWriter(cartography, n=len(source))
        hooks.append(writer)
    callback = ObservationCallback(source, targets, on_logits=_compose(hooks), **options)
    return callback, writer
