"""Training a round's model: the built-in :func:`fit`, the papers' stopping rule, and the training-function
contract for a user's own loop.

A round trains through a *training function* ``train_fn(model, labeled, observer) -> TrainRecord | None``
(:data:`TrainFn`): ``labeled`` is a :class:`LabeledSet` (the labelled rows, their loss settings and the
round's seed), ``observer`` a :class:`~forgetting.observe.Observer` to call after every epoch (or step). The
built-in one, :func:`fit_fn`, runs :func:`fit`; a user's keeps its own optimizer, augmentation, AMP and
scheduler, and may reuse :class:`StoppingRule` (train to a target training accuracy, between ``min_epochs``
and ``max_epochs``).

:func:`fit` indexes in-memory data directly on the device (no DataLoader, no workers) and reads a lazy
:class:`~forgetting.data.source.DatasetSource` through a DataLoader. One host sync per epoch (the stopping
rule reads the epoch's accuracy); none per batch.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from forgetting.callbacks import TrainingCallback
from forgetting.data.source import DataSource
from forgetting.exceptions import ConfigError, check_choice
from forgetting.inference import (
    autocast_context,
    default_batch_size,
    eval_mode,
    iter_batches,
    model_device,
    to_input,
)
from forgetting.observe import Observer
from forgetting.performance import flush_denormals, fused_optimizer_ok
from forgetting.records import TrainRecord

__all__ = [
    "ACCURACY_SOURCES",
    "OPTIMIZERS",
    "SCHEDULES",
    "LabeledSet",
    "StoppingRule",
    "TrainConfig",
    "TrainFn",
    "augment_batch",
    "evaluate_accuracy",
    "fit",
    "fit_fn",
    "make_optimizer",
    "run_train_fn",
]

logger = logging.getLogger(__name__)

OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("constant", "plateau", "cosine")
ACCURACY_SOURCES = ("running", "eval")


@dataclass
class TrainConfig:
    """How to train one model.

    Stopping: with ``epochs`` set, exactly that many epochs. Otherwise train until the training accuracy
    reaches ``target_accuracy`` (after at least ``min_epochs``), and never beyond ``max_epochs``.
    ``accuracy_source="running"`` uses the running accuracy of the epoch (free); ``"eval"`` runs an eval-mode
    pass over the training set after each epoch (exact, costs a pass).

    Learning-rate schedules that work when the epoch count is unknown: ``constant`` and ``plateau``
    (halve the rate when the epoch's training loss has not improved for 3 epochs). ``cosine`` anneals over
    ``epochs`` (or ``max_epochs`` when training to a target accuracy).
    """

    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    schedule: Literal["constant", "plateau", "cosine"] = "constant"
    batch_size: int = 64
    target_accuracy: float | None = 0.92
    accuracy_source: Literal["running", "eval"] = "running"
    min_epochs: int = 1
    max_epochs: int = 100
    epochs: int | None = None
    augment: bool = False
    crop_padding: int = 2
    flip: bool = True

    def __post_init__(self) -> None:
        check_choice("train.optimizer", self.optimizer, OPTIMIZERS)
        check_choice("train.schedule", self.schedule, SCHEDULES)
        check_choice("train.accuracy_source", self.accuracy_source, ACCURACY_SOURCES)
        if self.batch_size < 1:
            raise ConfigError(f"train.batch_size must be >= 1, got {self.batch_size}")
        if self.lr <= 0:
            raise ConfigError(f"train.lr must be > 0, got {self.lr}")
        if self.epochs is None:
            if self.target_accuracy is None:
                raise ConfigError("train: set either `epochs` (fixed) or `target_accuracy` (with max_epochs)")
            if not 0.0 < self.target_accuracy <= 1.0:
                raise ConfigError(f"train.target_accuracy must be in (0, 1], got {self.target_accuracy}")
            if not 1 <= self.min_epochs <= self.max_epochs:
                raise ConfigError(
                    f"train: need 1 <= min_epochs <= max_epochs, got {self.min_epochs} and {self.max_epochs}"
                )
        elif self.epochs < 1:
            raise ConfigError(f"train.epochs must be >= 1, got {self.epochs}")

    @property
    def epoch_limit(self) -> int:
        """The most epochs a fit can run."""
        return self.epochs if self.epochs is not None else self.max_epochs


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer named by ``config.optimizer``, in PyTorch's fused implementation when every parameter
    is on a CPU or CUDA device (one kernel per step instead of a few per parameter tensor: about 0.3 ms less
    per step for small-cnn on a CPU, see :mod:`forgetting.performance`)."""
    params = list(model.parameters())
    fused = fused_optimizer_ok(params)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay, fused=fused)
    return torch.optim.SGD(
        params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay, fused=fused
    )


class StoppingRule:
    """The papers' stopping rule, for the built-in :func:`fit` and for any training loop.

    With ``epochs`` set: stop after exactly that many epochs. Otherwise stop at the end of the first epoch
    (at least ``min_epochs``) whose training accuracy reaches ``target_accuracy``, and never run more than
    ``max_epochs``. Feed each batch's logits with :meth:`update` (accumulates on the device, no host sync),
    then call :meth:`epoch_end` once per epoch (one sync) to learn whether to stop::

        rule = StoppingRule(target_accuracy=0.92, min_epochs=5, max_epochs=40)
        while True:
            for x, y in loader:
                logits = model(x); ...; rule.update(logits, y)
            if rule.epoch_end():
                break

    Attributes:
        epoch: epochs ended so far.
        accuracy: the training accuracy of the last ended epoch (NaN before the first).
        reached: ``True`` once the target was reached; ``False`` when ``max_epochs`` ran out first; ``None``
            with a fixed number of epochs (or before the end).
    """

    def __init__(
        self,
        target_accuracy: float | None = 0.92,
        *,
        min_epochs: int = 1,
        max_epochs: int = 100,
        epochs: int | None = None,
        ignore_index: int | None = None,
    ) -> None:
        if epochs is None:
            if target_accuracy is None:
                raise ConfigError(
                    "StoppingRule: give `epochs` (fixed) or `target_accuracy` (with max_epochs)"
                )
            if not 0.0 < target_accuracy <= 1.0:
                raise ConfigError(f"target_accuracy must be in (0, 1], got {target_accuracy}")
            if not 1 <= min_epochs <= max_epochs:
                raise ConfigError(f"need 1 <= min_epochs <= max_epochs, got {min_epochs} and {max_epochs}")
        elif epochs < 1:
            raise ConfigError(f"epochs must be >= 1, got {epochs}")
        self.target_accuracy = target_accuracy
        self.min_epochs = int(min_epochs)
        self.max_epochs = int(max_epochs)
        self.epochs = epochs
        self.ignore_index = ignore_index
        self.epoch = 0
        self.accuracy = math.nan
        self.reached: bool | None = None
        self._correct: torch.Tensor | None = None
        self._counted: torch.Tensor | None = None

    @classmethod
    def from_config(cls, config: TrainConfig, *, ignore_index: int | None = None) -> StoppingRule:
        """The rule of a :class:`TrainConfig`: its ``target_accuracy``, ``min_epochs``, ``max_epochs`` and
        ``epochs``."""
        return cls(
            config.target_accuracy,
            min_epochs=config.min_epochs,
            max_epochs=config.max_epochs,
            epochs=config.epochs,
            ignore_index=ignore_index,
        )

    @property
    def epoch_limit(self) -> int:
        """The most epochs the rule allows."""
        return self.epochs if self.epochs is not None else self.max_epochs

    def update(self, logits: torch.Tensor, targets: torch.Tensor) -> None:
        """Count one batch: ``logits`` ``[B, K]`` (or ``[B, K, H, W]``), ``targets`` int64 ``[B]`` (or
        ``[B, H, W]``; ``ignore_index`` pixels are not counted). Stays on the device."""
        with torch.no_grad():
            if self.ignore_index is not None:
                valid = targets != self.ignore_index
            else:
                valid = torch.ones_like(targets, dtype=torch.bool)
            correct = ((logits.argmax(1) == targets) & valid).sum()
            counted = valid.sum()
            if self._correct is None or self._counted is None:
                self._correct, self._counted = correct, counted
            else:
                self._correct = self._correct + correct
                self._counted = self._counted + counted

    def epoch_end(self, accuracy: float | None = None) -> bool:
        """End an epoch; ``True`` when training should stop now.

        Args:
            accuracy: the epoch's training accuracy when measured elsewhere (an eval pass); default the
                running accuracy of the batches given to :meth:`update` (one host sync).
        """
        self.epoch += 1
        if accuracy is None:
            correct = 0 if self._correct is None else int(self._correct)
            counted = 0 if self._counted is None else int(self._counted)
            accuracy = correct / max(counted, 1)
        self.accuracy = float(accuracy)
        self._correct = self._counted = None
        if self.epochs is not None:
            return self.epoch >= self.epochs
        assert self.target_accuracy is not None
        if self.epoch >= self.min_epochs and self.accuracy >= self.target_accuracy:
            self.reached = True
            return True
        if self.epoch >= self.max_epochs:
            self.reached = False
            return True
        return False


@dataclass
class LabeledSet:
    """What a round trains on, as a training function receives it.

    Attributes:
        data: the labelled rows (a :class:`~forgetting.data.source.DataSource`: in-memory tensors on the
            fast path, or the user's lazy Dataset).
        num_classes: K.
        seed: the round's training seed (batch order, augmentation, dropout). The loop also seeds torch's
            global RNG with it around the training function.
        device: the model's device.
        class_weights: float32 ``[K]`` cross-entropy weights the task chose (segmentation: from this round's
            labelled masks), or ``None``.
        ignore_index: target value that adds no loss and no accuracy (a segmentation void label), or
            ``None``.
    """

    data: DataSource
    num_classes: int
    seed: int
    device: torch.device
    class_weights: torch.Tensor | None = None
    ignore_index: int | None = None

    def __len__(self) -> int:
        return len(self.data)

    def dataset(self, *, train: bool = True) -> torch.utils.data.Dataset:
        """A ``torch.utils.data.Dataset`` of ``(x float [C, H, W], y)`` items (the source's training
        transform with ``train=True``)."""
        return self.data.torch_dataset(train=train)

    def loader(
        self, batch_size: int, *, shuffle: bool = True, train: bool = True, **kwargs: object
    ) -> DataLoader:
        """A ``DataLoader`` over :meth:`dataset`, shuffled by a generator seeded with :attr:`seed`; extra
        keyword arguments go to the DataLoader (``num_workers``, ``pin_memory``, ``drop_last``...)."""
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(
            self.dataset(train=train),
            batch_size=batch_size,
            shuffle=shuffle,
            generator=generator,
            **kwargs,  # type: ignore[arg-type]
        )

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Cross entropy with the task's class weights and ignore index (what :func:`fit` minimises)."""
        weight = None if self.class_weights is None else self.class_weights.to(logits.device)
        ignore = self.ignore_index if self.ignore_index is not None else -100
        return F.cross_entropy(logits.float(), targets, weight=weight, ignore_index=ignore)

    def stopping_rule(self, config: TrainConfig) -> StoppingRule:
        """:meth:`StoppingRule.from_config` with this set's ignore index."""
        return StoppingRule.from_config(config, ignore_index=self.ignore_index)


#: A round's training function: trains ``model`` (already on its device, freshly initialised and seeded)
#: on the labelled set, calling ``observer.epoch_end(model)`` after every epoch (and ``observer.step_end``
#: after every step for a step cadence). Returns a :class:`TrainRecord` (epochs, steps, training accuracy,
#: whether a target was reached; the loop measures the seconds), or ``None`` (the observer's counts are used).
TrainFn = Callable[[nn.Module, LabeledSet, Observer], "TrainRecord | None"]


def fit_fn(config: TrainConfig | None = None) -> TrainFn:
    """The built-in training function: :func:`fit` with ``config`` and the labelled set's seed, class
    weights and ignore index, driving the observer through its callback hooks."""
    config = config or TrainConfig()

    def train(model: nn.Module, labeled: LabeledSet, observer: Observer) -> TrainRecord:
        return fit(
            model,
            labeled.data,
            config,
            seed=labeled.seed,
            callbacks=[observer],
            class_weights=labeled.class_weights,
            ignore_index=labeled.ignore_index,
        )

    return train


@flush_denormals()
def run_train_fn(train_fn: TrainFn, model: nn.Module, labeled: LabeledSet, observer: Observer) -> TrainRecord:
    """Run ``train_fn`` as a round does: inside a forked RNG seeded with ``labeled.seed`` (so a user's loop
    that draws from torch's global RNG is reproducible and leaves the caller's state alone), the model in
    train mode, subnormal floats flushed (:func:`forgetting.performance.flush_denormals`), the wall time
    split into training and observation.

    Raises:
        ConfigError: ``train_fn`` returned something other than a :class:`TrainRecord` or ``None``.
    """
    device = labeled.device
    fork_devices = [device] if device.type == "cuda" else []
    start = time.perf_counter()
    with torch.random.fork_rng(devices=fork_devices):
        torch.manual_seed(labeled.seed)
        model.train()
        out = train_fn(model, labeled, observer)
    model.train()
    wall = time.perf_counter() - start
    if out is not None and not isinstance(out, TrainRecord):
        raise ConfigError(
            f"the training function returned {type(out).__name__}; return a forgetting.TrainRecord or None"
        )
    record = out or TrainRecord(epochs=observer.epochs, steps=observer.steps)
    record.seconds = max(wall - observer.seconds, 0.0)
    record.track_seconds = observer.seconds
    return record


def augment_batch(
    x_B_C_H_W: torch.Tensor,
    y: torch.Tensor,
    *,
    padding: int,
    flip: bool,
    generator: torch.Generator,
    ignore_index: int = -100,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random crop (zero padding) and horizontal flip, per sample, vectorised.

    Args:
        x_B_C_H_W: float images.
        y: int64 labels ``[B]`` (left unchanged) or masks ``[B, H, W]`` (cropped and flipped with the image;
            padded pixels get ``ignore_index``).
        generator: a CPU generator; the random offsets are drawn on the CPU and moved once.
    """
    b, _, h, w = x_B_C_H_W.shape
    device = x_B_C_H_W.device
    is_mask = y.ndim == 3
    if padding > 0:
        dy = torch.randint(0, 2 * padding + 1, (b,), generator=generator).to(device)
        dx = torch.randint(0, 2 * padding + 1, (b,), generator=generator).to(device)
        xp = F.pad(x_B_C_H_W, (padding,) * 4)
        rows = (dy[:, None] + torch.arange(h, device=device))[:, :, None]  # [B, H, 1]
        cols = (dx[:, None] + torch.arange(w, device=device))[:, None, :]  # [B, 1, W]
        bidx = torch.arange(b, device=device)[:, None, None]
        x_B_C_H_W = xp.permute(0, 2, 3, 1)[bidx, rows, cols].permute(0, 3, 1, 2)
        if is_mask:
            yp = F.pad(y, (padding,) * 4, value=ignore_index)
            y = yp[bidx, rows, cols]
    if flip:
        do_flip = (torch.rand(b, generator=generator) < 0.5).to(device)
        x_B_C_H_W = torch.where(do_flip[:, None, None, None], x_B_C_H_W.flip(-1), x_B_C_H_W)
        if is_mask:
            y = torch.where(do_flip[:, None, None], y.flip(-1), y)
    return x_B_C_H_W.contiguous(), y


@flush_denormals()
@torch.inference_mode()
def evaluate_accuracy(
    model: nn.Module, data: DataSource, *, batch_size: int | None = None, ignore_index: int | None = None
) -> float:
    """Eval-mode accuracy of ``model`` on ``data`` (pixel accuracy over valid pixels for masks)."""
    device = model_device(model)
    batch_size = batch_size or default_batch_size(device, data.input_shape, model)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    total = torch.zeros((), dtype=torch.int64, device=device)
    with eval_mode(model), autocast_context(device):
        for x, y in data.batches(device, batch_size):
            assert y is not None
            pred = model(x).argmax(1)
            valid = y != ignore_index if ignore_index is not None else torch.ones_like(y, dtype=torch.bool)
            correct += ((pred == y) & valid).sum()
            total += valid.sum()
    return float(correct) / max(int(total), 1)


@flush_denormals()
def fit(
    model: nn.Module,
    data: DataSource,
    config: TrainConfig | None = None,
    *,
    seed: int = 0,
    callbacks: Sequence[TrainingCallback] = (),
    class_weights: torch.Tensor | None = None,
    ignore_index: int | None = None,
    num_workers: int = 0,
) -> TrainRecord:
    """Train ``model`` on ``data`` in place, with subnormal floats flushed to zero on the CPU (restored
    afterwards; opt out with ``FORGETTING_KEEP_DENORMALS=1``, see :mod:`forgetting.performance`).

    Args:
        model: a module on its target device, returning logits ``[B, K]`` (classification) or
            ``[B, K, H, W]`` (segmentation).
        data: the labelled rows: in-memory ``images`` uint8 ``[N, C, H, W]`` with ``targets`` int64 ``[N]``
            or ``[N, H, W]`` (a :class:`~forgetting.data.dataset.Split`, moved to the model's device once
            and indexed there), or any :class:`~forgetting.data.source.DataSource` (a lazy one is read
            through a DataLoader in the same seeded order, with its training transform).
        config: stopping rule, optimizer, schedule, augmentation. Defaults to :class:`TrainConfig`.
        seed: seeds the batch order, the augmentation and dropout (through a forked RNG, so the caller's
            global RNG state is untouched).
        callbacks: objects implementing :class:`forgetting.callbacks.TrainingCallback`; their wall time is
            reported as ``track_seconds`` and excluded from ``seconds``.
        class_weights: float ``[K]`` cross-entropy weights (segmentation with rare classes).
        ignore_index: target value that contributes no loss and no accuracy.
        num_workers: DataLoader workers for a lazy ``data``.

    Returns:
        A :class:`TrainRecord`.
    """
    config = config or TrainConfig()
    n = len(data)
    if n == 0:
        raise ConfigError("fit: the training set is empty")
    device = model_device(model)
    tensors = data.as_tensors()
    images = targets = None
    if tensors is not None:
        if tensors[1] is None:
            raise ConfigError("fit: the training data has no targets")
        images, targets = tensors[0].to(device), tensors[1].to(device)
    train_items = data.torch_dataset(train=True) if tensors is None else None
    loss_ignore = ignore_index if ignore_index is not None else -100
    weights = class_weights.to(device) if class_weights is not None else None
    optimizer = make_optimizer(model, config)
    scheduler: torch.optim.lr_scheduler.LRScheduler | torch.optim.lr_scheduler.ReduceLROnPlateau | None = None
    if config.schedule == "plateau":
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=3)
    elif config.schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epoch_limit)

    rule = StoppingRule.from_config(config, ignore_index=loss_ignore)
    generator = torch.Generator().manual_seed(seed)
    track_seconds = 0.0
    step = 0
    epoch = 0
    fork_devices = [device] if device.type == "cuda" else []
    start = time.perf_counter()

    def batches(order: torch.Tensor) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if images is not None and targets is not None:
            order = order.to(device)
            for sl in iter_batches(n, config.batch_size):
                idx = order[sl]
                yield to_input(images[idx]), targets[idx]
        else:
            loader = DataLoader(
                train_items,  # type: ignore[arg-type]
                batch_size=config.batch_size,
                sampler=order.tolist(),
                num_workers=num_workers,
                pin_memory=device.type == "cuda",
            )
            for x, y in loader:
                yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)

    with torch.random.fork_rng(devices=fork_devices):
        torch.manual_seed(seed)
        model.train()
        if callbacks:
            t = time.perf_counter()
            for cb in callbacks:
                cb.on_train_begin(model)
            track_seconds += time.perf_counter() - t
        while epoch < rule.epoch_limit:
            epoch += 1
            model.train()
            order = torch.randperm(n, generator=generator)
            loss_sum = torch.zeros((), device=device)
            counted = torch.zeros((), dtype=torch.int64, device=device)
            for x, y in batches(order):
                if config.augment:
                    x, y = augment_batch(
                        x,
                        y,
                        padding=config.crop_padding,
                        flip=config.flip,
                        generator=generator,
                        ignore_index=loss_ignore,
                    )
                with autocast_context(device):
                    logits = model(x)
                loss = F.cross_entropy(logits.float(), y, weight=weights, ignore_index=loss_ignore)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step += 1
                with torch.no_grad():
                    rule.update(logits, y)
                    valid_count = (y != loss_ignore).sum()
                    counted += valid_count
                    loss_sum += loss.detach() * valid_count
                if callbacks:
                    t = time.perf_counter()
                    for cb in callbacks:
                        cb.on_step_end(model, epoch=epoch, step=step)
                    track_seconds += time.perf_counter() - t
                    if not model.training:  # (observation passes restore every module's own flag)
                        model.train()
            epoch_loss = float(loss_sum) / max(int(counted), 1)  # the one sync of the epoch
            eval_accuracy = None
            if config.epochs is None and config.accuracy_source == "eval":
                t_eval = time.perf_counter()
                eval_accuracy = evaluate_accuracy(model, data, ignore_index=ignore_index)
                logger.debug("eval pass on the training set took %.3fs", time.perf_counter() - t_eval)
            stop = rule.epoch_end(eval_accuracy)
            if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                scheduler.step(epoch_loss)
            elif scheduler is not None:
                scheduler.step()
            if callbacks:
                t = time.perf_counter()
                for cb in callbacks:
                    cb.on_epoch_end(model, epoch=epoch, step=step)
                track_seconds += time.perf_counter() - t
            if stop:
                break
        if rule.reached is False:
            logger.info(
                "stopped at max_epochs=%d with training accuracy %.3f < target %.3f",
                config.max_epochs,
                rule.accuracy,
                config.target_accuracy,
            )
    accuracy = rule.accuracy
    reached = rule.reached
    model.train()
    total = time.perf_counter() - start
    return TrainRecord(
        epochs=epoch,
        steps=step,
        seconds=total - track_seconds,
        track_seconds=track_seconds,
        train_accuracy=float(accuracy),
        reached_target=reached,
    )
