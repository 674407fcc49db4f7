"""One profiled training run: build the model, train it, collect the per-sample dynamics.

:func:`train_profiled` is the unit every part of the profile reuses (the main run, the threshold-sample runs
of the mislabel flags, the retrainings of the pruning experiment): the same model reference, trainer and
seeds, so the runs differ only in what they are asked to differ in.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset as TorchDataset

from forgetting.data.source import DatasetSource, DataSource, TensorSource
from forgetting.devices import resolve_device
from forgetting.exceptions import ConfigError
from forgetting.models.factory import ModelRef, build_from_ref, import_object
from forgetting.observe import Observer
from forgetting.profile.dynamics import DynamicsAccumulator, SampleDynamics, eval_observation
from forgetting.records import TrainRecord
from forgetting.training import LabeledSet, TrainConfig, TrainFn, fit_fn, run_train_fn

__all__ = [
    "DEFAULT_TRAIN",
    "OBSERVE_MODES",
    "TrainedProfile",
    "build_net",
    "derived_seed",
    "relabeled",
    "train_function",
    "train_profiled",
    "with_rows",
]

Observe = Literal["presentation", "eval"]

OBSERVE_MODES: tuple[str, ...] = ("presentation", "eval")
"""When a profile observes: ``presentation`` (each batch's own training logits, Toneva et al.) or ``eval``
(the training set predicted in eval mode after every epoch)."""

DEFAULT_TRAIN = TrainConfig(epochs=10)
"""The trainer of a profile when none is given: 10 epochs (a fixed number, so that every sample's
dynamics cover the same epochs)."""


def derived_seed(seed: int, *tags: int) -> int:
    """A 63-bit seed derived from ``(seed, *tags)``: independent streams for the runs of one profile."""
    state = np.random.SeedSequence([int(seed), *map(int, tags)]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


class _WithRows(TorchDataset):
    def __init__(self, dataset: TorchDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, row: int) -> tuple[Any, Any, int]:
        x, y = self.dataset[row][:2]
        return x, y, int(row)


def with_rows(dataset: TorchDataset) -> TorchDataset:
    """``dataset`` with each item's row appended: ``(x, y) -> (x, y, row)``.

    For a training function of your own that feeds presentation-time dynamics: the DataLoader then
    collates the rows to an int64 ``[B]`` tensor to pass to ``observer.batch_end(model, rows, logits, y)``::

        loader = DataLoader(with_rows(labeled.dataset()), batch_size=64, shuffle=True, generator=g)
        for x, y, rows in loader:
            logits = model(x.to(device)); ...; optimizer.step()
            observer.batch_end(model, rows.to(device), logits, y.to(device))
    """
    return _WithRows(dataset)


class _Relabeled(TorchDataset):
    """Items of ``dataset`` with the labels of ``targets``."""

    def __init__(self, dataset: TorchDataset, targets: torch.Tensor) -> None:
        self.dataset = dataset
        self.targets = targets

    def __len__(self) -> int:
        return int(self.targets.shape[0])

    def __getitem__(self, row: int) -> tuple[Any, torch.Tensor]:
        return self.dataset[row][0], self.targets[row]


def relabeled(source: DataSource, targets_N: torch.Tensor) -> DataSource:
    """``source`` with its labels replaced by ``targets_N`` (int64 ``[N]``); in-memory stays in memory."""
    tensors = source.as_tensors()
    targets_N = targets_N.to(torch.int64).cpu()
    if tensors is not None:
        return TensorSource(tensors[0], targets_N.to(tensors[0].device))
    return DatasetSource(_Relabeled(source.torch_dataset(train=True), targets_N), targets=targets_N)


def build_net(
    model: ModelRef,
    source: DataSource,
    num_classes: int,
    *,
    seed: int,
    options: Mapping[str, Any] | None = None,
    device: torch.device,
) -> nn.Module:
    """``model`` built for ``source``'s channels and ``num_classes`` outputs, seeded, on ``device``."""
    in_channels = int(source.input_shape[0])
    return build_from_ref(model, in_channels, num_classes, seed=seed, options=options).to(device)


@dataclass
class TrainedProfile:
    """One training run with its dynamics: the model, its training record and the read-outs."""

    model: nn.Module
    train: TrainRecord
    dynamics: SampleDynamics
    accumulator: DynamicsAccumulator


def train_function(train: TrainConfig | None, train_fn: TrainFn | str | None) -> TrainFn:
    """The training function of a run: ``train_fn`` (or the function its import path names), else the
    built-in :func:`~forgetting.training.fit` with ``train`` (default :data:`DEFAULT_TRAIN`)."""
    if train_fn is None:
        return fit_fn(train or DEFAULT_TRAIN)
    if isinstance(train_fn, str):
        fn = import_object(train_fn, what="training function")
        if not callable(fn):
            raise ConfigError(f"training function {train_fn!r} names a {type(fn).__name__}, not a function")
        return fn
    return train_fn


def train_profiled(
    source: DataSource,
    num_classes: int,
    *,
    model: ModelRef = "small-cnn",
    model_options: Mapping[str, Any] | None = None,
    train: TrainConfig | None = None,
    train_fn: TrainFn | str | None = None,
    observe: Observe = "presentation",
    seed: int = 0,
    device: torch.device | str | None = "auto",
    history_dir: str | os.PathLike[str] | None = None,
    eval_batch_size: int | None = None,
) -> TrainedProfile:
    """Build ``model`` (seeded with ``seed``), train it on ``source`` and collect its per-sample dynamics.

    Args:
        source: the labelled training data (int64 ``[N]`` labels in ``0..num_classes-1``).
        num_classes: K, the model's number of outputs.
        model, model_options: a model reference (zoo name, registered name, import path or factory).
        train: the built-in trainer's settings (``fit``); ignored with ``train_fn``.
        train_fn: a training function ``(model, labeled, observer)`` of your own, or its import path. For
            presentation-time dynamics it calls ``observer.batch_end(model, rows, logits, targets)`` after
            each step (see :func:`with_rows`); for ``observe="eval"``, ``observer.epoch_end(model)``.
        observe: ``"presentation"`` (the training batches' own logits) or ``"eval"`` (an eval-mode pass
            over the training set after every epoch).
        seed: the model's initialisation and the training seed (batch order, dropout).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``...
        history_dir: write cartography-style per-epoch JSONL files there.
        eval_batch_size: batch size of the eval-mode passes.
    """
    if observe not in OBSERVE_MODES:
        raise ConfigError(f"observe must be one of {', '.join(OBSERVE_MODES)}, got {observe!r}")
    dev = resolve_device(device)
    net = build_net(model, source, num_classes, seed=seed, options=model_options, device=dev)
    accumulator = DynamicsAccumulator(
        len(source), num_classes, device=dev, presentation=observe == "presentation", history_dir=history_dir
    )
    watcher = (
        accumulator
        if observe == "presentation"
        else eval_observation(source, accumulator, batch_size=eval_batch_size)
    )
    observer = Observer([watcher])
    labeled = LabeledSet(source, num_classes, seed, dev)
    record = run_train_fn(train_function(train, train_fn), net, labeled, observer)
    dynamics = accumulator.result()
    if int(dynamics.observations.max(initial=0)) == 0:
        how = (
            "call observer.batch_end(model, rows, logits, targets) after every step"
            if observe == "presentation"
            else "call observer.epoch_end(model) after every epoch"
        )
        raise ConfigError(f"the training function observed nothing: {how}")
    return TrainedProfile(net, record, dynamics, accumulator)
