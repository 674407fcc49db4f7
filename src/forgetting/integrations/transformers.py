"""Hugging Face ``transformers``: learning dynamics inside a ``Trainer``, through a ``TrainerCallback``.

Needs ``transformers`` (``pip install 'forgetting[transformers]'``); importing this module without it
raises :class:`~forgetting.exceptions.MissingDependencyError`.

:class:`ForgettingTrainerCallback` observes a set after every ``every`` epochs or optimizer steps, in eval
mode (dropout off), on the model's device, and counts its learning events in an
:class:`~forgetting.events.EventTracker`::

    callback = ForgettingTrainerCallback(pool_dataset, collate_fn=DataCollatorWithPadding(tokenizer))
    trainer = Trainer(model=model, args=args, train_dataset=train_dataset, callbacks=[callback])
    trainer.train()
    callback.tracker.switches                        # int32 [N_pool]

Models with a classification head (``...ForSequenceClassification``, ``...ForImageClassification``) are
observed through their logits ``[B, K]``. The set's items are dicts of keyword inputs (``input_ids``,
``attention_mask``, ``pixel_values``...) and optionally a label (``labels``/``label``/``label_ids``), read by
a :class:`~forgetting.integrations.mapping.MappingSource`; each batch goes to ``forward(model, inputs)``,
by default :func:`hf_logits` (``model(**inputs).logits``). A
:class:`~forgetting.data.source.DataSource` of image tensors works too (``forward`` then gets the tensor;
the default calls ``model(x)``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import torch
from torch import nn

from forgetting.cartography import CartographyWriter
from forgetting.data.source import DataSource
from forgetting.events import EventTracker
from forgetting.exceptions import ConfigError
from forgetting.integrations._common import Forward, LogitsHook, observation_callback, require
from forgetting.integrations.mapping import LABEL_KEYS, MappingSource
from forgetting.observe import ObservationCallback, Observer

hf = require("transformers", "transformers", "forgetting.integrations.transformers")

__all__ = ["ForgettingTrainerCallback", "ObserverTrainerCallback", "hf_logits"]


def hf_logits(model: nn.Module, inputs: Any) -> torch.Tensor:
    """The logits of a Hugging Face model: ``model(**inputs)`` for a dict batch, ``model(inputs)`` for a
    tensor, then the output's ``logits`` (or its first element for ``return_dict=False``)."""
    out = model(**inputs) if isinstance(inputs, Mapping) else model(inputs)
    if isinstance(out, Mapping):
        return out["logits"]
    if isinstance(out, tuple):
        return out[0]
    return out


class ObserverTrainerCallback(hf.TrainerCallback):  # type: ignore[name-defined]  # optional, imported lazily
    """Drives an :class:`~forgetting.observe.Observer` from a Hugging Face ``Trainer``: ``step_end`` after
    every optimizer step, ``epoch_end`` after every epoch, on the model the trainer hands its callbacks.

    Args:
        observer: the observer.
        model: the module to observe; default the ``Trainer``'s model.
    """

    def __init__(self, observer: Observer, model: nn.Module | None = None) -> None:
        self.observer = observer
        self.model = model

    def _target(self, kwargs: dict[str, Any]) -> nn.Module:
        model = self.model if self.model is not None else kwargs.get("model")
        if model is None:
            raise ConfigError(
                "the Trainer passed no model to its callbacks; give ObserverTrainerCallback(model=)"
            )
        return model

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.observer.on_train_begin(self._target(kwargs))

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.observer.step_end(self._target(kwargs))

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.observer.epoch_end(self._target(kwargs))


class ForgettingTrainerCallback(ObserverTrainerCallback):
    """Count learning events of a set while a Hugging Face ``Trainer`` trains.

    Args:
        dataset: the set to observe: a dataset of dict items (a ``datasets.Dataset``, a list of dicts, a
            torch ``Dataset``), or a :class:`~forgetting.data.source.DataSource`.
        targets: ``None`` (unlabelled: switches only), int64 ``[N]`` labels, or ``"source"``: the labels
            the items carry (forgetting and learning counts then too).
        collate_fn: turns a list of items into a dict of tensors; default
            ``transformers.default_data_collator`` (give the ``DataCollatorWithPadding`` you train with for
            text of varying length).
        forward: ``forward(model, inputs) -> logits [B, K]``; default :func:`hf_logits`.
        label_keys: the item keys that hold the label (never passed to the model).
        every, unit: observe every ``every`` epochs (``unit="epoch"``) or optimizer steps (``"step"``).
        subsample, subsample_mode, seed, batch_size, ignore_index: as
            :class:`~forgetting.observe.ObservationCallback`.
        on_logits: ``on_logits(idx, logits, targets, epoch)`` for every batch of a pass.
        cartography: a directory, or a :class:`~forgetting.cartography.CartographyWriter` (for ``ids``,
            ``overwrite``): also write the logits after every observed epoch in the dataset-cartography
            format (:mod:`forgetting.cartography`), closed when training ends; needs ``targets``.
        num_workers: DataLoader workers of a pass over a dict dataset.
        name: a label for logs.

    Attributes:
        observer: the :class:`~forgetting.observe.Observer`.
        cartography_writer: the :class:`~forgetting.cartography.CartographyWriter`, or ``None``.
    """

    def __init__(
        self,
        dataset: Any,
        targets: torch.Tensor | Literal["source"] | None = None,
        *,
        collate_fn: Callable[[list[Any]], Mapping[str, Any]] | None = None,
        forward: Forward | None = None,
        label_keys: Sequence[str] = LABEL_KEYS,
        every: int = 1,
        unit: Literal["epoch", "step"] = "epoch",
        subsample: float | int | None = None,
        subsample_mode: Literal["rotating", "fixed", "unstable"] = "rotating",
        seed: int = 0,
        batch_size: int | None = None,
        ignore_index: int | None = None,
        on_logits: LogitsHook | None = None,
        cartography: str | os.PathLike[str] | CartographyWriter | None = None,
        num_workers: int = 0,
        name: str = "pool",
    ) -> None:
        if isinstance(targets, str) and targets != "source":
            raise ConfigError(f"targets must be a tensor, 'source' or None, got {targets!r}")
        if isinstance(dataset, DataSource):
            source = dataset
        else:
            source = MappingSource(
                dataset,
                collate_fn=collate_fn or hf.default_data_collator,
                label_keys=label_keys,
                has_targets=isinstance(targets, str),
                num_workers=num_workers,
            )
        callback, self.cartography_writer = observation_callback(
            source,
            targets,
            cartography=cartography,
            on_logits=on_logits,
            forward=forward or hf_logits,
            every=every,
            unit=unit,
            subsample=subsample,
            subsample_mode=subsample_mode,
            seed=seed,
            batch_size=batch_size,
            ignore_index=ignore_index,
            name=name,
        )
        super().__init__(Observer([callback]))
        self._callback = callback

    @property
    def callback(self) -> ObservationCallback:
        """The observation callback."""
        return self._callback

    @property
    def tracker(self) -> EventTracker:
        """The observed set's tracker."""
        return self.callback.tracker

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.cartography_writer is not None:
            self.cartography_writer.close()
