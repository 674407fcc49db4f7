"""Training on in-memory tensors, with stopping rules and epoch/step callbacks.

The data is indexed directly on the device: no DataLoader, no workers. One host sync per epoch (the stopping
rule reads the epoch's accuracy); none per batch.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from forgetting.callbacks import TrainingCallback
from forgetting.data.dataset import Split
from forgetting.exceptions import ConfigError, DivergedError, check_choice
from forgetting.inference import autocast_context, eval_mode, iter_batches, model_device, to_input
from forgetting.records import TrainRecord

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
        if not math.isfinite(self.lr) or self.lr <= 0:
            raise ConfigError(f"train.lr must be a finite number > 0, got {self.lr}")
        if not math.isfinite(self.weight_decay) or self.weight_decay < 0:
            raise ConfigError(f"train.weight_decay must be a finite number >= 0, got {self.weight_decay}")
        if not 0.0 <= self.momentum < 1.0:
            raise ConfigError(f"train.momentum must be in [0, 1), got {self.momentum}")
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
    """The optimizer named by ``config.optimizer``."""
    if config.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )


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


@torch.inference_mode()
def evaluate_accuracy(
    model: nn.Module, data: Split, *, batch_size: int = 1024, ignore_index: int | None = None
) -> float:
    """Eval-mode accuracy of ``model`` on ``data`` (pixel accuracy over valid pixels for masks)."""
    device = model_device(model)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    total = torch.zeros((), dtype=torch.int64, device=device)
    with eval_mode(model), autocast_context(device):
        for sl in iter_batches(len(data), batch_size):
            y = data.targets[sl].to(device, non_blocking=True)
            pred = model(to_input(data.images[sl], device)).argmax(1)
            valid = y != ignore_index if ignore_index is not None else torch.ones_like(y, dtype=torch.bool)
            correct += ((pred == y) & valid).sum()
            total += valid.sum()
    return float(correct) / max(int(total), 1)


def finite_parameters(model: nn.Module) -> torch.Tensor:
    """A 0-d bool tensor on the model's device: every parameter is finite (no host sync)."""
    flags = [torch.isfinite(p).all() for p in model.parameters()]
    if not flags:
        return torch.ones((), dtype=torch.bool)
    return torch.stack(flags).all()


def fit(
    model: nn.Module,
    data: Split,
    config: TrainConfig | None = None,
    *,
    seed: int = 0,
    callbacks: Sequence[TrainingCallback] = (),
    class_weights: torch.Tensor | None = None,
    ignore_index: int | None = None,
) -> TrainRecord:
    """Train ``model`` on ``data`` in place.

    Args:
        model: a module on its target device, returning logits ``[B, K]`` (classification) or
            ``[B, K, H, W]`` (segmentation).
        data: ``images`` uint8 ``[N, C, H, W]`` and ``targets`` int64 ``[N]`` or ``[N, H, W]``. Moved to the
            model's device once.
        config: stopping rule, optimizer, schedule, augmentation. Defaults to :class:`TrainConfig`.
        seed: seeds the batch order, the augmentation and dropout (through a forked RNG, so the caller's
            global RNG state is untouched).
        callbacks: objects implementing :class:`forgetting.callbacks.TrainingCallback`; their wall time is
            reported as ``track_seconds`` and excluded from ``seconds``.
        class_weights: float ``[K]`` cross-entropy weights (segmentation with rare classes).
        ignore_index: target value that contributes no loss and no accuracy.

    Returns:
        A :class:`TrainRecord`.

    Raises:
        DivergedError: the model's outputs (logits of a training batch) or its weights became NaN or
            infinite (flagged on the device, read at the epoch's sync), naming the epoch; a lower learning
            rate is the usual fix.
    """
    config = config or TrainConfig()
    n = len(data)
    if n == 0:
        raise ConfigError("fit: the training set is empty")
    device = model_device(model)
    images = data.images.to(device)
    targets = data.targets.to(device)
    loss_ignore = ignore_index if ignore_index is not None else -100
    weights = class_weights.to(device) if class_weights is not None else None
    optimizer = make_optimizer(model, config)
    scheduler: torch.optim.lr_scheduler.LRScheduler | torch.optim.lr_scheduler.ReduceLROnPlateau | None = None
    if config.schedule == "plateau":
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=3)
    elif config.schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epoch_limit)

    generator = torch.Generator().manual_seed(seed)
    track_seconds = 0.0
    step = 0
    epoch = 0
    accuracy = math.nan
    reached: bool | None = None
    fork_devices = [device] if device.type == "cuda" else []
    start = time.perf_counter()
    with torch.random.fork_rng(devices=fork_devices):
        torch.manual_seed(seed)
        model.train()
        if callbacks:
            t = time.perf_counter()
            for cb in callbacks:
                cb.on_train_begin(model)
            track_seconds += time.perf_counter() - t
        while epoch < config.epoch_limit:
            epoch += 1
            model.train()
            order = torch.randperm(n, generator=generator).to(device)
            loss_sum = torch.zeros((), device=device)
            correct = torch.zeros((), dtype=torch.int64, device=device)
            counted = torch.zeros((), dtype=torch.int64, device=device)
            finite = torch.ones((), dtype=torch.bool, device=device)  # outputs and weights, read once
            for sl in iter_batches(n, config.batch_size):
                idx = order[sl]
                x = to_input(images[idx])
                y = targets[idx]
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
                    valid = y != loss_ignore
                    n_valid = valid.sum()
                    correct += ((logits.argmax(1) == y) & valid).sum()
                    counted += n_valid
                    # an all-ignored batch has a NaN mean loss (and no gradient): it adds nothing
                    loss_sum += torch.where(n_valid > 0, loss.detach() * n_valid, 0.0)
                    finite &= torch.isfinite(logits).all()
                if callbacks:
                    t = time.perf_counter()
                    for cb in callbacks:
                        cb.on_step_end(model, epoch=epoch, step=step)
                    track_seconds += time.perf_counter() - t
                    model.train()
            finite &= finite_parameters(model)
            epoch_loss = float(loss_sum) / max(int(counted), 1)  # the one sync of the epoch
            if not bool(finite):
                raise DivergedError(
                    epoch,
                    lr=config.lr,
                    what=f"the model's outputs or weights became NaN or inf (epoch loss {epoch_loss:g})",
                )
            if config.epochs is None and config.accuracy_source == "eval":
                t_eval = time.perf_counter()
                accuracy = evaluate_accuracy(
                    model, Split(data.images, data.targets), ignore_index=ignore_index
                )
                logger.debug("eval pass on the training set took %.3fs", time.perf_counter() - t_eval)
            else:
                accuracy = int(correct) / max(int(counted), 1)
            if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                scheduler.step(epoch_loss)
            elif scheduler is not None:
                scheduler.step()
            if callbacks:
                t = time.perf_counter()
                for cb in callbacks:
                    cb.on_epoch_end(model, epoch=epoch, step=step)
                track_seconds += time.perf_counter() - t
            if config.epochs is None and config.target_accuracy is not None:
                if epoch >= config.min_epochs and accuracy >= config.target_accuracy:
                    reached = True
                    break
        else:
            if config.epochs is None:
                reached = False
                logger.info(
                    "stopped at max_epochs=%d with training accuracy %.3f < target %.3f",
                    config.max_epochs,
                    accuracy,
                    config.target_accuracy,
                )
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
