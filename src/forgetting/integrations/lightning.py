"""PyTorch Lightning: learning dynamics inside a ``lightning.Trainer``, and active learning with one.

Needs ``lightning`` (``pip install 'forgetting[lightning]'``); importing this module without it raises
:class:`~forgetting.exceptions.MissingDependencyError`.

* :class:`ForgettingCallback`: a Lightning ``Callback`` that observes a set (the unlabelled pool, or the
  training set with its labels) after every ``every`` training epochs or optimizer steps, in eval mode,
  without augmentation, on the trainer's device, into an :class:`~forgetting.events.EventTracker`::

      callback = ForgettingCallback(pool_dataset, every=1)          # or a DataLoader, a DataSource
      trainer = lightning.Trainer(max_epochs=20, callbacks=[callback])
      trainer.fit(module, datamodule)
      callback.tracker.switches                                       # int32 [N_pool]

  Without a ``pool`` it reads ``trainer.datamodule.pool_dataloader()`` when fitting starts.
* :func:`lightning_train_fn`: the training function of an active-learning round
  (``LoopConfig(train_fn=lightning_train_fn(...))``): a fresh ``Trainer`` per round fits the loop's seeded
  model on the labelled rows and reports every epoch to the round's observer.
* :func:`pool_source`: a ``LightningDataModule``'s pool as the loop's training rows.

Several devices (DDP): every process observes the whole set, so each holds the same counts; the work is
not split. The trackers are not part of Lightning checkpoints.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import nn

from forgetting.cartography import CartographyWriter
from forgetting.data.source import DataSource
from forgetting.events import EventTracker
from forgetting.exceptions import ConfigError
from forgetting.integrations._common import Forward, LogitsHook, as_source, observation_callback, require
from forgetting.observe import ObservationCallback, Observer
from forgetting.records import TrainRecord
from forgetting.training import LabeledSet, TrainFn

pl = require("lightning.pytorch", "lightning", "forgetting.integrations.lightning")

__all__ = ["ForgettingCallback", "ObserverCallback", "lightning_train_fn", "pool_source"]

log = logging.getLogger(__name__)

Transform = Callable[[torch.Tensor], torch.Tensor]


def pool_source(
    datamodule: Any, *, transform: Transform | None = None, setup: str | None = "fit"
) -> DataSource:
    """The pool a ``LightningDataModule`` exposes through ``pool_dataloader()``, as a
    :class:`~forgetting.data.source.DataSource` (its dataset read in order, with ``transform``).

    Use it as the training rows of :func:`~forgetting.loop.run_active_learning`;
    :class:`ForgettingCallback` without a pool observes it.

    Args:
        datamodule: a ``LightningDataModule`` with a ``pool_dataloader()`` method.
        transform: the eval transform applied to each item's ``x``.
        setup: the stage to run ``datamodule.setup`` for first (``None``: it has run).

    Raises:
        ConfigError: the datamodule has no ``pool_dataloader`` method.
    """
    method = getattr(datamodule, "pool_dataloader", None)
    if not callable(method):
        raise ConfigError(
            f"{type(datamodule).__name__} has no pool_dataloader(); add a method that returns a DataLoader "
            "over the pool (unshuffled, without augmentation), or pass the pool to ForgettingCallback"
        )
    if setup is not None:
        datamodule.setup(setup)
    return as_source(method(), transform=transform)


class ObserverCallback(pl.Callback):  # type: ignore[name-defined]  # the optional lightning, imported lazily
    """Drives an :class:`~forgetting.observe.Observer` from a Lightning ``Trainer``: ``epoch_end`` after
    every training epoch, ``step_end`` after every optimizer step (``trainer.global_step`` advancing, so
    gradient accumulation counts steps, not batches).

    Args:
        observer: the observer (an active-learning round's, or one built by :class:`ForgettingCallback`).
        model: the module to observe; default the ``LightningModule`` being trained. Give the inner network
            when the ``LightningModule`` wraps it and its ``forward`` is not ``x -> logits``.
    """

    def __init__(self, observer: Observer, model: nn.Module | None = None) -> None:
        super().__init__()
        self.observer = observer
        self.model = model
        self._last_step = 0

    def _target(self, pl_module: nn.Module) -> nn.Module:
        return self.model if self.model is not None else pl_module

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self._last_step = int(trainer.global_step)
        self.observer.on_train_begin(self._target(pl_module))

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = int(trainer.global_step)
        if step > self._last_step:
            self._last_step = step
            self.observer.step_end(self._target(pl_module))

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        self.observer.epoch_end(self._target(pl_module))


class ForgettingCallback(ObserverCallback):
    """Count learning events of a set while a Lightning ``Trainer`` trains.

    Args:
        pool: the set to observe: a torch ``Dataset`` of ``(x, y)`` items, a ``DataLoader`` over one (its
            dataset is read in order; no shuffling, no augmentation: give it the eval transform), uint8
            ``[N, C, H, W]`` images, or a :class:`~forgetting.data.source.DataSource`. ``None``: the
            ``pool_dataloader()`` of the trainer's ``LightningDataModule``, read when fitting starts.
        targets: ``None`` (unlabelled: switches only), int64 ``[N]`` labels, or ``"source"``: the labels
            the items carry (forgetting and learning counts then too).
        train: optionally the training set too, observed with the labels its items carry (give an
            un-augmented view); its tracker is :attr:`train_tracker`.
        transform: the eval transform applied to a ``Dataset``'s or ``DataLoader``'s ``x``.
        every, unit: observe every ``every`` epochs (``unit="epoch"``) or optimizer steps (``"step"``).
        subsample, subsample_mode, seed, batch_size, ignore_index: as
            :class:`~forgetting.observe.ObservationCallback`.
        forward: ``forward(module, x) -> logits [B, K]`` when the module is not called as ``module(x)``.
        on_logits: ``on_logits(idx, logits, targets, epoch)`` for every batch of the pool's passes.
        cartography: a directory, or a :class:`~forgetting.cartography.CartographyWriter` (for ``ids``,
            ``overwrite``): also write the pool's logits after every observed epoch in the
            dataset-cartography format (``<dir>/training_dynamics/dynamics_epoch_<e>.jsonl``; see
            :mod:`forgetting.cartography`), closed when training ends; needs ``targets``. To draw a data
            map of the training set, observe it as the pool, with ``targets="source"``.
        name: a label for logs.

    Attributes:
        observer: the :class:`~forgetting.observe.Observer` (``None`` until fitting starts without a pool).
        cartography_writer: the :class:`~forgetting.cartography.CartographyWriter`, or ``None``.
    """

    def __init__(
        self,
        pool: Any = None,
        targets: torch.Tensor | Literal["source"] | None = None,
        *,
        train: Any = None,
        transform: Transform | None = None,
        every: int = 1,
        unit: Literal["epoch", "step"] = "epoch",
        subsample: float | int | None = None,
        subsample_mode: Literal["rotating", "fixed", "unstable"] = "rotating",
        seed: int = 0,
        batch_size: int | None = None,
        ignore_index: int | None = None,
        forward: Forward | None = None,
        on_logits: LogitsHook | None = None,
        cartography: str | os.PathLike[str] | CartographyWriter | None = None,
        name: str = "pool",
    ) -> None:
        super().__init__(Observer([]))
        if isinstance(targets, str) and targets != "source":
            raise ConfigError(f"targets must be a tensor, 'source' or None, got {targets!r}")
        self._targets = targets
        self._train = train
        self._transform = transform
        self._cartography = cartography
        self._on_logits = on_logits
        self._options: dict[str, Any] = {
            "every": every,
            "unit": unit,
            "subsample": subsample,
            "subsample_mode": subsample_mode,
            "seed": seed,
            "batch_size": batch_size,
            "ignore_index": ignore_index,
            "forward": forward,
        }
        self.cartography_writer: CartographyWriter | None = None
        self._callbacks: list[ObservationCallback] = []
        self._name = name
        self._built = False
        if pool is not None:
            self._build(as_source(pool, transform=transform))

    def _build(self, pool: DataSource) -> None:
        callbacks: list[ObservationCallback] = []
        pool_cb, self.cartography_writer = observation_callback(
            pool,
            self._targets,
            cartography=self._cartography,
            on_logits=self._on_logits,
            name=self._name,
            **self._options,
        )
        callbacks.append(pool_cb)
        if self._train is not None:
            train_cb, _ = observation_callback(
                as_source(self._train, transform=self._transform),
                "source",
                cartography=None,
                on_logits=None,
                name="train",
                **self._options,
            )
            callbacks.append(train_cb)
        self._callbacks = callbacks
        self.observer = Observer(callbacks)
        self._built = True

    @property
    def callbacks(self) -> list[ObservationCallback]:
        """The observation callbacks: the pool's, then the training set's (when given)."""
        return self._callbacks

    @property
    def tracker(self) -> EventTracker | None:
        """The pool's tracker (``None`` before fitting starts when the pool comes from the datamodule)."""
        return self.observer.tracker

    @property
    def train_tracker(self) -> EventTracker | None:
        """The training set's tracker, when ``train`` was given."""
        return self._callbacks[1].tracker if len(self._callbacks) > 1 else None

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if self._built or stage != "fit":
            return
        datamodule = getattr(trainer, "datamodule", None)
        if datamodule is None:
            raise ConfigError(
                "ForgettingCallback got no pool and the trainer has no LightningDataModule; pass the pool "
                "(a Dataset, DataLoader or DataSource), or fit with a datamodule that has pool_dataloader()"
            )
        self._build(pool_source(datamodule, transform=self._transform, setup=None))

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        if self.cartography_writer is not None:
            self.cartography_writer.close()


def lightning_train_fn(
    trainer_factory: Callable[..., Any],
    module_factory: Callable[[nn.Module], Any] | None = None,
    *,
    batch_size: int = 64,
    loader_options: dict[str, Any] | None = None,
    datamodule_factory: Callable[[LabeledSet], Any] | None = None,
    accuracy_key: str | None = None,
) -> TrainFn:
    """A round's training function that fits the loop's model with a fresh ``lightning.Trainer``.

    Args:
        trainer_factory: ``trainer_factory(callbacks=[...]) -> lightning.Trainer``, called once per round;
            it must hand ``callbacks`` to the ``Trainer`` (they report every epoch to the round's observer),
            e.g. ``lambda callbacks: lightning.Trainer(max_epochs=10, callbacks=callbacks, logger=False)``.
        module_factory: ``module_factory(model) -> LightningModule`` wrapping the round's freshly built,
            seeded network (the module must train that network's parameters, e.g. hold it as an
            attribute). ``None``: ``LoopConfig.model`` already builds a ``LightningModule``.
        batch_size: batch size of the labelled rows' loader (``labeled.loader``, shuffled by the round's
            seed).
        loader_options: more keyword arguments of that ``DataLoader`` (``num_workers``...).
        datamodule_factory: ``datamodule_factory(labeled) -> LightningDataModule`` to train from a datamodule
            instead (``labeled.dataset()`` is the labelled rows' ``Dataset``); its ``train_dataloader``
            should shuffle with a seeded generator for reproducible rounds.
        accuracy_key: a metric the module logs (``self.log("train_acc", ...)``), reported as the round's
            training accuracy; default none (NaN).

    Returns:
        ``train_fn(model, labeled, observer) -> TrainRecord`` with the epochs and optimizer steps the
        trainer ran. The pool is observed on the round's model (the network, not its wrapper), in eval mode,
        after every epoch (or step) at the loop's cadence; the model is back on the loop's device after
        ``fit``.
    """
    options = dict(loader_options or {})

    def train(model: nn.Module, labeled: LabeledSet, observer: Observer) -> TrainRecord:
        module = model if module_factory is None else module_factory(model)
        if not isinstance(module, pl.LightningModule):
            raise ConfigError(
                f"lightning_train_fn: the round's model is a {type(module).__name__}, not a LightningModule; "
                "make LoopConfig.model build your LightningModule, or pass "
                "module_factory=lambda net: MyModule(net)"
            )
        bridge = ObserverCallback(observer, model=model)
        trainer = trainer_factory(callbacks=[bridge])
        if not isinstance(trainer, pl.Trainer) or bridge not in trainer.callbacks:
            raise ConfigError(
                "lightning_train_fn: trainer_factory must return a lightning.Trainer built with the "
                "callbacks it is given: lambda callbacks: lightning.Trainer(..., callbacks=callbacks)"
            )
        if datamodule_factory is not None:
            trainer.fit(module, datamodule=datamodule_factory(labeled))
        else:
            trainer.fit(module, train_dataloaders=labeled.loader(batch_size, **options))
        model.to(labeled.device)  # Lightning may move the module back to the CPU when it tears down
        accuracy = math.nan
        if accuracy_key is not None:
            value = trainer.callback_metrics.get(accuracy_key)
            if value is None:
                log.warning("lightning_train_fn: the module logged no %r metric", accuracy_key)
            else:
                accuracy = float(value)
        return TrainRecord(
            epochs=int(trainer.current_epoch), steps=int(trainer.global_step), train_accuracy=accuracy
        )

    return train
