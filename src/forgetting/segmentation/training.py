"""Training and evaluating a segmenter, with per-pixel forgetting tracked on its sections.

:func:`fit_segmentation` is :func:`forgetting.training.fit` with what segmentation needs in front of it:
class weights computed from the training masks (rare facies get more weight), an ``ignore_index``, flip-only
augmentation by default (a seismic section mirrored left-right is still geologically plausible; a crop
would shift the pixel grid), and optional :class:`~forgetting.observe.ObservationCallback` trackers on the
training sections (and any other set, e.g. the test sections). The trackers observe in eval mode without
augmentation after every ``every`` epochs, so each map stays aligned with its section's pixels.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from forgetting._tensors import class_counts
from forgetting.callbacks import TrainingCallback
from forgetting.data.dataset import Split
from forgetting.data.source import DataSource, TensorSource
from forgetting.exceptions import ConfigError
from forgetting.inference import forward_batches
from forgetting.observe import ObservationCallback
from forgetting.performance import flush_denormals
from forgetting.records import TrainRecord
from forgetting.segmentation.metrics import ConfusionMatrix, SegmentationMetrics
from forgetting.settings import CLASS_WEIGHTING, ClassWeighting, Optimizer, Schedule
from forgetting.training import TrainConfig, fit

__all__ = [
    "CLASS_WEIGHTING",
    "SegmentationFit",
    "class_weights_from_masks",
    "evaluate_segmentation",
    "fit_segmentation",
    "predict_segmentation",
    "segmentation_train_config",
]

logger = logging.getLogger(__name__)


def class_weights_from_masks(
    masks_N_H_W: torch.Tensor,
    num_classes: int,
    *,
    scheme: ClassWeighting | Sequence[float] = "median",
    ignore_index: int | None = None,
) -> torch.Tensor:
    """Cross-entropy class weights from pixel frequencies, float32 ``[K]`` on the masks' device.

    Args:
        masks_N_H_W: int64 training masks.
        num_classes: K.
        scheme: ``"median"``: median frequency balancing, ``median(f) / f_c`` (Eigen & Fergus, 2015);
            ``"balanced"``: ``1 / (K f_c)``; ``"sqrt"``: ``1 / sqrt(K f_c)`` (milder); ``"none"``: ones; or
            K explicit weights. ``f_c`` is class c's share of the valid pixels; medians and weights use the
            classes present only, and an absent class gets weight 0.
        ignore_index: label value to leave out.
    """
    k = int(num_classes)
    if not isinstance(scheme, str):
        weights = torch.as_tensor(list(scheme), dtype=torch.float32)
        if weights.shape != (k,) or not bool(torch.all(weights >= 0)):
            raise ConfigError(f"class weights must be {k} non-negative numbers, got {list(scheme)}")
        return weights.to(masks_N_H_W.device)
    if scheme not in CLASS_WEIGHTING:
        raise ConfigError(f"class weighting {scheme!r} is not allowed; choose one of {list(CLASS_WEIGHTING)}")
    counts = class_counts(masks_N_H_W, k, ignore_index=ignore_index).double()
    if scheme == "none":
        return torch.ones(k, dtype=torch.float32, device=masks_N_H_W.device)
    total = counts.sum().clamp_min(1.0)
    freq = counts / total
    present = counts > 0
    weights = torch.zeros(k, dtype=torch.float64, device=masks_N_H_W.device)
    if scheme == "median":
        weights[present] = freq[present].median() / freq[present]
    elif scheme == "balanced":
        weights[present] = 1.0 / (int(present.sum()) * freq[present])
    else:
        weights[present] = 1.0 / torch.sqrt(int(present.sum()) * freq[present])
    return weights.float()


def segmentation_train_config(
    epochs: int = 30,
    *,
    lr: float = 1e-3,
    batch_size: int = 8,
    optimizer: Optimizer = "adam",
    weight_decay: float = 0.0,
    schedule: Schedule = "constant",
    flip: bool = True,
) -> TrainConfig:
    """A :class:`TrainConfig` for segmentation: a fixed number of epochs, flip-only augmentation."""
    return TrainConfig(
        optimizer=optimizer,
        lr=lr,
        weight_decay=weight_decay,
        schedule=schedule,
        batch_size=batch_size,
        epochs=epochs,
        target_accuracy=None,
        augment=flip,
        crop_padding=0,
        flip=flip,
    )


@dataclass
class SegmentationFit:
    """What :func:`fit_segmentation` returns.

    Attributes:
        record: the trainer's :class:`TrainRecord` (epochs, steps, seconds, tracking seconds).
        class_weights: float32 ``[K]`` the weights used.
        trackers: the observation callbacks by name (``"train"``, and any passed in ``observe``).
    """

    record: TrainRecord
    class_weights: torch.Tensor
    trackers: dict[str, ObservationCallback] = field(default_factory=dict)


def fit_segmentation(
    model: nn.Module,
    data: Split,
    *,
    num_classes: int,
    config: TrainConfig | None = None,
    class_weights: ClassWeighting | Sequence[float] = "median",
    ignore_index: int | None = None,
    seed: int = 0,
    track_train: bool = True,
    observe: dict[str, Split] | None = None,
    every: int = 1,
    eval_batch_size: int = 16,
    callbacks: Sequence[TrainingCallback] = (),
) -> SegmentationFit:
    """Train a segmenter on ``data`` in place, tracking per-pixel forgetting on its sections.

    Args:
        model: a :class:`~forgetting.models.Segmenter` (or any module mapping float ``[B, C, H, W]`` to
            logits ``[B, K, H, W]``) on its target device.
        data: images uint8 ``[N, C, H, W]``, masks int64 ``[N, H, W]``.
        num_classes: K.
        config: optimizer, epochs, batch size, augmentation; default :func:`segmentation_train_config`.
        class_weights: a scheme of :func:`class_weights_from_masks` or K weights.
        ignore_index: mask value that adds no loss, no accuracy and no event (e.g. padding, 255).
        seed: seeds batch order, augmentation and dropout (see :func:`forgetting.training.fit`).
        track_train: observe the training sections after every ``every`` epochs (name ``"train"``).
        observe: more sets to observe at the same cadence, by name (e.g. ``{"test": dataset.test}``).
        every: observation cadence in epochs.
        eval_batch_size: sections per batch in observation passes.
        callbacks: further training callbacks.

    Returns:
        A :class:`SegmentationFit`; ``fit.trackers["train"].tracker`` is the per-pixel
        :class:`~forgetting.events.EventTracker` of shape ``(N, H, W)``.
    """
    if data.targets.ndim != 3:
        raise ConfigError(
            f"fit_segmentation needs masks [N, H, W]; got targets of shape {tuple(data.targets.shape)}"
        )
    config = config or segmentation_train_config()
    weights = class_weights_from_masks(
        data.targets, num_classes, scheme=class_weights, ignore_index=ignore_index
    )
    logger.info("class weights: %s", ", ".join(f"{w:.3g}" for w in weights.tolist()))
    trackers: dict[str, ObservationCallback] = {}
    sets = ({"train": data} if track_train else {}) | dict(observe or {})
    for name, split in sets.items():
        trackers[name] = ObservationCallback(
            split.images,
            split.targets,
            every=every,
            batch_size=eval_batch_size,
            ignore_index=ignore_index,
            name=name,
        )
    record = fit(
        model,
        data,
        config,
        seed=seed,
        callbacks=[*trackers.values(), *callbacks],
        class_weights=weights,
        ignore_index=ignore_index,
    )
    return SegmentationFit(record, weights, trackers)


@flush_denormals()
@torch.inference_mode()
def predict_segmentation(
    model: nn.Module, images: torch.Tensor | DataSource, *, batch_size: int = 16
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode predictions and softmax margins of every pixel, on the model's device.

    Args:
        images: uint8 ``[N, C, H, W]`` (any device; copied per batch) or a
            :class:`~forgetting.data.source.DataSource`.

    Returns:
        ``(pred int64 [N, H, W], margin float32 [N, H, W])`` where the margin is the top-1 minus the top-2
        softmax probability (0: on the decision boundary, 1: certain).
    """
    source = images if isinstance(images, DataSource) else TensorSource(images)
    preds: list[torch.Tensor] = []
    margins: list[torch.Tensor] = []
    with forward_batches(model, source, batch_size=batch_size, targets=False) as batches:
        for logits, _ in batches:
            probs = logits.float().softmax(1)
            preds.append(probs.argmax(1))
            if probs.shape[1] > 1:
                top = probs.topk(2, dim=1).values
                margins.append(top[:, 0] - top[:, 1])
            else:  # one class: always certain
                margins.append(torch.ones_like(probs[:, 0]))
    if not preds:
        h, w = source.input_shape[-2:]
        return (torch.zeros((0, h, w), dtype=torch.int64), torch.zeros((0, h, w)))
    return torch.cat(preds), torch.cat(margins)


@flush_denormals()
def evaluate_segmentation(
    model: nn.Module,
    data: DataSource,
    *,
    num_classes: int,
    ignore_index: int | None = None,
    batch_size: int = 16,
) -> SegmentationMetrics:
    """Pixel accuracy, class accuracies, IoU, mIoU and FWIoU of ``model`` on ``data`` (eval mode; any
    :class:`~forgetting.data.source.DataSource` with int64 ``[N, H, W]`` masks)."""
    cm = ConfusionMatrix(num_classes, ignore_index)
    with forward_batches(model, data, batch_size=batch_size) as batches:
        for logits, y in batches:
            assert y is not None
            cm.update(logits.argmax(1), y)
    return cm.compute()
