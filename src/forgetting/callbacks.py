"""The hook protocol between the trainer and whatever watches training (trackers, loggers).

Epochs and steps are counted from 1: ``on_epoch_end(model, epoch=1, step=s)`` runs after the first
epoch, when ``s`` optimizer steps have been taken in total.

A callback may also watch every mini-batch as it is presented (:class:`BatchCallback`, optional):
``on_batch_end(model, rows=..., logits=..., targets=..., epoch=e, step=s)`` runs after the optimizer step of
each batch with the rows of the training data in that batch and the logits the model produced for them in
its training forward pass (Toneva et al.'s presentation-time observation: no extra forward pass).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import torch
from torch import nn

if TYPE_CHECKING:
    from forgetting.events import EventTracker


@runtime_checkable
class TrainingCallback(Protocol):
    """Anything with these three methods can watch :func:`forgetting.training.fit`."""

    def on_train_begin(self, model: nn.Module) -> None:
        """Called once before the first optimizer step, with the model about to be trained."""

    def on_step_end(self, model: nn.Module, *, epoch: int, step: int) -> None:
        """Called after every optimizer step: ``epoch`` is the epoch in progress (from 1), ``step`` the steps
        taken in total."""

    def on_epoch_end(self, model: nn.Module, *, epoch: int, step: int) -> None:
        """Called after every epoch: ``epoch`` has just ended (from 1), ``step`` optimizer steps were taken in
        total."""


@runtime_checkable
class BatchCallback(Protocol):
    """The optional per-batch hook: a :class:`TrainingCallback` that also has ``on_batch_end`` gets every
    training batch's own predictions.

    ``rows``: int64 ``[B]`` indices into the training data of the batch's samples (on the model's device);
    ``logits``: ``[B, K]`` (or ``[B, K, H, W]``) from the training forward pass, detached (bfloat16 under
    CUDA autocast, augmented inputs when the trainer augments); ``targets``: int64 ``[B]`` (or
    ``[B, H, W]``); ``epoch``: the current epoch (from 1); ``step``: optimizer steps taken so far, this
    batch's included. Implementations must not synchronise with the host (no ``.item()``, no ``.cpu()``).
    """

    def on_batch_end(
        self,
        model: nn.Module,
        *,
        rows: torch.Tensor,
        logits: torch.Tensor,
        targets: torch.Tensor,
        epoch: int,
        step: int,
    ) -> None:
        """Called after the optimizer step of every training batch, with its rows and training logits."""


class Callback:
    """A no-op base implementing :class:`TrainingCallback`; override what you need.

    Override :meth:`on_batch_end` (and set ``wants_batches = True``) to observe every training batch; the
    trainer only gathers the batch rows for callbacks that ask for them.
    """

    #: Whether the trainer should call :meth:`on_batch_end` (the per-batch hook costs nothing otherwise).
    wants_batches: bool = False

    @property
    def tracker(self) -> EventTracker | None:
        """The :class:`~forgetting.events.EventTracker` this callback fills, if any (an
        :class:`~forgetting.observe.Observer` reports its first callback's); ``None`` here."""
        return None

    def on_train_begin(self, model: nn.Module) -> None:
        """Called once before the first optimizer step, with the model about to be trained."""
        return None

    def on_step_end(self, model: nn.Module, *, epoch: int, step: int) -> None:
        """Called after every optimizer step: ``epoch`` is the epoch in progress (from 1), ``step`` the steps
        taken in total."""
        return None

    def on_epoch_end(self, model: nn.Module, *, epoch: int, step: int) -> None:
        """Called after every epoch: ``epoch`` has just ended (from 1), ``step`` optimizer steps were taken in
        total."""
        return None

    def on_batch_end(
        self,
        model: nn.Module,
        *,
        rows: torch.Tensor,
        logits: torch.Tensor,
        targets: torch.Tensor,
        epoch: int,
        step: int,
    ) -> None:
        """Called after the optimizer step of every training batch, with its rows and training logits (see
        :class:`BatchCallback`); only when ``wants_batches`` is true."""
        return None


def batch_callbacks(callbacks: Iterable[object]) -> list[BatchCallback]:
    """The callbacks of ``callbacks`` that take the per-batch hook: a :class:`Callback` with
    ``wants_batches`` true, or any other object implementing :class:`BatchCallback`."""
    out: list[BatchCallback] = []
    for cb in callbacks:
        if isinstance(cb, Callback):
            if cb.wants_batches:
                out.append(cb)
        elif isinstance(cb, BatchCallback):
            out.append(cb)
    return out
