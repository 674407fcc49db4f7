"""The hook protocol between the trainer and whatever watches training (trackers, loggers).

Epochs and steps are counted from 1: ``on_epoch_end(model, epoch=1, step=s)`` runs after the first
epoch, when ``s`` optimizer steps have been taken in total.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import nn


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


class Callback:
    """A no-op base implementing :class:`TrainingCallback`; override what you need."""

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
