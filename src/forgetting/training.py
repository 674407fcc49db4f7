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

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from forgetting.callbacks import TrainingCallback, batch_callbacks
from forgetting.data.source import DataSource
from forgetting.exceptions import ConfigError, DivergedError, TrainingLimitError
from forgetting.inference import autocast_context, forward_batches, iter_batches, model_device, to_input
from forgetting.observe import Observer
from forgetting.performance import flush_denormals, fused_optimizer_ok
from forgetting.records import TrainRecord
from forgetting.settings import ACCURACY_SOURCES, OPTIMIZERS, SCHEDULES, UNCAPPED_EPOCH_LIMIT, TrainConfig

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

    ``max_epochs=None`` removes the cap (the authors' protocol): :meth:`epoch_end` raises
    :class:`~forgetting.exceptions.TrainingLimitError` after :data:`UNCAPPED_EPOCH_LIMIT` epochs below target.

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
        max_epochs: int | None = 100,
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
            if min_epochs < 1 or (max_epochs is not None and min_epochs > max_epochs):
                raise ConfigError(f"need 1 <= min_epochs <= max_epochs, got {min_epochs} and {max_epochs}")
        elif epochs < 1:
            raise ConfigError(f"epochs must be >= 1, got {epochs}")
        self.target_accuracy = target_accuracy
        self.min_epochs = int(min_epochs)
        self.max_epochs = None if max_epochs is None else int(max_epochs)
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
        """The most epochs the rule allows (:data:`UNCAPPED_EPOCH_LIMIT` without a cap)."""
        if self.epochs is not None:
            return self.epochs
        return self.max_epochs if self.max_epochs is not None else UNCAPPED_EPOCH_LIMIT

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
        if self.epoch >= self.epoch_limit:
            if self.max_epochs is None:
                raise TrainingLimitError(
                    f"training with max_epochs = none reached training accuracy {self.accuracy:.3f} < target "
                    f"{self.target_accuracy:.3f} after the safety limit of {UNCAPPED_EPOCH_LIMIT} epochs; "
                    "lower train.target_accuracy, change the optimizer or learning rate, or set max_epochs"
                )
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
"""A round's training function, ``train_fn(model, labeled, observer) -> TrainRecord | None``: train
``model`` on ``labeled`` and call ``observer.epoch_end(model)`` after every epoch (see :func:`fit_fn`)."""


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
    correct = torch.zeros((), dtype=torch.int64, device=device)
    total = torch.zeros((), dtype=torch.int64, device=device)
    with forward_batches(model, data, batch_size=batch_size) as batches:
        for logits, y in batches:
            assert y is not None
            valid = y != ignore_index if ignore_index is not None else torch.ones_like(y, dtype=torch.bool)
            correct += ((logits.argmax(1) == y) & valid).sum()
            total += valid.sum()
    return float(correct) / max(int(total), 1)


def finite_parameters(model: nn.Module) -> torch.Tensor:
    """A 0-d bool tensor on the model's device: every parameter is finite (no host sync)."""
    flags = [torch.isfinite(p).all() for p in model.parameters()]
    if not flags:
        return torch.ones((), dtype=torch.bool)
    return torch.stack(flags).all()


#: A batch transform for :func:`fit`: ``(x [B, C, H, W] float, y [B] or [B, H, W] int64, torch.Generator)
#: -> (x, y)``; it draws any randomness from the generator it is given (the run's, seeded), on the host.
BatchTransform = Callable[[torch.Tensor, torch.Tensor, torch.Generator], tuple[torch.Tensor, torch.Tensor]]


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
    max_steps: int | None = None,
    batch_transform: BatchTransform | None = None,
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
            reported as ``track_seconds`` and excluded from ``seconds``. Those that also take the per-batch
            hook (:class:`forgetting.callbacks.BatchCallback`) get each batch's rows, detached logits and
            targets after its optimizer step; nothing else about training changes (same RNG stream, same
            computation), and without such a callback no rows are gathered.
        class_weights: float ``[K]`` cross-entropy weights (segmentation with rare classes).
        ignore_index: target value that contributes no loss and no accuracy.
        num_workers: DataLoader workers for a lazy ``data``.
        max_steps: a step budget: training stops after this many optimizer steps, in the middle of an epoch
            if need be (the epoch still ends: its callbacks run). The stopping rule still bounds the epochs,
            so give ``config.epochs`` at least ``ceil(max_steps / batches per epoch)``.
        batch_transform: called on every training batch after the built-in augmentation, as
            ``x, y = batch_transform(x, y, generator)`` with the run's seeded generator (see
            :data:`BatchTransform`), e.g. the augmentation protocol's rotations and flips.

    Returns:
        A :class:`TrainRecord`.

    Raises:
        TrainingLimitError: ``config.max_epochs`` is ``None`` and the target was not reached within
            :data:`UNCAPPED_EPOCH_LIMIT` epochs.
        DivergedError: the model's outputs (logits of a training batch) or its weights became NaN or
            infinite (flagged on the device, read at the epoch's sync), naming the epoch; a lower learning
            rate is the usual fix.
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

    listeners = batch_callbacks(callbacks)  # the callbacks that watch every batch (presentation time)

    def batches(order: torch.Tensor) -> Iterator[tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]]:
        """``(rows [B] on the device or None, x, y)``; rows only when a callback watches batches."""
        if images is not None and targets is not None:
            order = order.to(device)
            for sl in iter_batches(n, config.batch_size):
                idx = order[sl]
                yield idx, to_input(images[idx]), targets[idx]
        else:
            order_dev = order.to(device) if listeners else None  # one copy per epoch
            loader = DataLoader(
                train_items,  # type: ignore[arg-type]
                batch_size=config.batch_size,
                sampler=order.tolist(),
                num_workers=num_workers,
                pin_memory=device.type == "cuda",
            )
            offset = 0
            for x, y in loader:
                b = int(x.shape[0])
                rows = None if order_dev is None else order_dev[offset : offset + b]
                offset += b
                yield rows, x.to(device, non_blocking=True), y.to(device, non_blocking=True)

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
            finite = torch.ones((), dtype=torch.bool, device=device)  # outputs and weights, read once
            for rows, x, y in batches(order):
                if config.augment:
                    x, y = augment_batch(
                        x,
                        y,
                        padding=config.crop_padding,
                        flip=config.flip,
                        generator=generator,
                        ignore_index=loss_ignore,
                    )
                if batch_transform is not None:
                    x, y = batch_transform(x, y, generator)
                with autocast_context(device):
                    logits = model(x)
                loss = F.cross_entropy(logits.float(), y, weight=weights, ignore_index=loss_ignore)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step += 1
                with torch.no_grad():
                    rule.update(logits, y)
                    n_valid = (y != loss_ignore).sum()
                    counted += n_valid
                    # an all-ignored batch has a NaN mean loss (and no gradient): it adds nothing
                    loss_sum += torch.where(n_valid > 0, loss.detach() * n_valid, 0.0)
                    finite &= torch.isfinite(logits).all()
                if listeners:
                    t = time.perf_counter()
                    assert rows is not None
                    with torch.no_grad():
                        batch_logits = logits.detach()
                        for listener in listeners:
                            listener.on_batch_end(
                                model, rows=rows, logits=batch_logits, targets=y, epoch=epoch, step=step
                            )
                    track_seconds += time.perf_counter() - t
                if callbacks:
                    t = time.perf_counter()
                    for cb in callbacks:
                        cb.on_step_end(model, epoch=epoch, step=step)
                    track_seconds += time.perf_counter() - t
                    if not model.training:  # (observation passes restore every module's own flag)
                        model.train()
                if max_steps is not None and step >= max_steps:
                    break  # the step budget is spent: end this epoch now
            finite &= finite_parameters(model)
            epoch_loss = float(loss_sum) / max(int(counted), 1)  # the one sync of the epoch
            if not bool(finite):
                raise DivergedError(
                    epoch,
                    lr=config.lr,
                    what=f"the model's outputs or weights became NaN or inf (epoch loss {epoch_loss:g})",
                )
            eval_accuracy = None
            if config.epochs is None and config.accuracy_source == "eval":
                t_eval = time.perf_counter()
                eval_accuracy = evaluate_accuracy(model, data, ignore_index=ignore_index)
                logger.debug("eval pass on the training set took %.3fs", time.perf_counter() - t_eval)
            if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                scheduler.step(epoch_loss)
            elif scheduler is not None:
                scheduler.step()
            if callbacks:
                t = time.perf_counter()
                for cb in callbacks:
                    cb.on_epoch_end(model, epoch=epoch, step=step)
                track_seconds += time.perf_counter() - t
            if rule.epoch_end(eval_accuracy):  # the callbacks have seen the epoch (also when this raises)
                break
            if max_steps is not None and step >= max_steps:
                break
        if rule.reached is False and (max_steps is None or step < max_steps):
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
