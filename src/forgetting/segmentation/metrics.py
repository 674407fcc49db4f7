"""Segmentation metrics from a confusion matrix: pixel accuracy, class accuracies, IoU, mIoU, FWIoU.

The confusion matrix is one ``bincount`` over ``true * K + pred`` on the device of the inputs; pixels whose
target equals ``ignore_index`` (or lies outside ``0..K-1``) go to a parked bin that is dropped, so there is
no boolean-mask indexing and no host sync until the ``K x K`` matrix is read.

Definitions (``C[i, j]``: pixels of true class ``i`` predicted as ``j``; ``n_i = sum_j C[i, j]``;
``p_j = sum_i C[i, j]``; ``N = sum C``), as in Long et al. (2015) and the F3 benchmark:

* pixel accuracy ``= trace(C) / N``;
* class accuracy ``acc_i = C[i, i] / n_i`` (NaN for a class with no pixels); mean class accuracy: their
  mean over classes with pixels;
* ``IoU_i = C[i, i] / (n_i + p_i - C[i, i])`` (NaN when the class is neither present nor predicted);
  mIoU: their mean over classes with a defined IoU;
* frequency-weighted IoU ``= sum_i (n_i / N) IoU_i`` over classes with pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from forgetting.exceptions import ConfigError

__all__ = ["ConfusionMatrix", "SegmentationMetrics", "confusion_matrix", "segmentation_metrics"]


def _as_tensor(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))


def confusion_matrix(
    pred: torch.Tensor | np.ndarray,
    target: torch.Tensor | np.ndarray,
    num_classes: int,
    ignore_index: int | None = None,
) -> torch.Tensor:
    """``C[i, j]``: pixels of true class ``i`` predicted as class ``j``.

    Args:
        pred: integer ``[*]`` predicted class ids in ``0..K-1`` (e.g. ``[N, H, W]``).
        target: integer ``[*]`` true class ids, same shape; ``ignore_index`` and values outside ``0..K-1``
            are left out.
        num_classes: K.
        ignore_index: target value to leave out.

    Returns:
        int64 ``[K, K]`` on the device of ``target``.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"num_classes must be an integer >= 1, got {num_classes!r}")
    p = _as_tensor(pred)
    t = _as_tensor(target)
    if tuple(p.shape) != tuple(t.shape):
        raise ConfigError(f"pred {tuple(p.shape)} and target {tuple(t.shape)} must have the same shape")
    if p.dtype.is_floating_point or t.dtype.is_floating_point:
        raise ConfigError(f"pred and target must be integer class ids, got {p.dtype} and {t.dtype}")
    k = num_classes
    t = t.reshape(-1).to(torch.int64)
    p = p.reshape(-1).to(device=t.device, dtype=torch.int64)
    valid = (t >= 0) & (t < k) & (p >= 0) & (p < k)
    if ignore_index is not None:
        valid &= t != ignore_index
    flat = torch.where(valid, t * k + p, k * k)  # the parked bin k*k collects left-out pixels
    return torch.bincount(flat, minlength=k * k + 1)[: k * k].view(k, k)


class ConfusionMatrix:
    """Accumulates a confusion matrix batch by batch, on the device of the first batch, without host syncs.

    Example:
        >>> cm = ConfusionMatrix(3, ignore_index=255)
        >>> cm.update(torch.tensor([0, 1, 2]), torch.tensor([0, 2, 255]))
        >>> cm.matrix.tolist()
        [[1, 0, 0], [0, 0, 0], [0, 1, 0]]
    """

    def __init__(self, num_classes: int, ignore_index: int | None = None) -> None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ConfigError(f"num_classes must be an integer >= 1, got {num_classes!r}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self._matrix: torch.Tensor | None = None

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add one batch: integer ``pred`` and ``target`` of one shape (e.g. ``[B, H, W]``)."""
        batch = confusion_matrix(pred, target, self.num_classes, self.ignore_index)
        self._matrix = batch if self._matrix is None else self._matrix + batch.to(self._matrix.device)

    @property
    def matrix(self) -> torch.Tensor:
        """int64 ``[K, K]`` (zeros before the first update)."""
        if self._matrix is None:
            return torch.zeros((self.num_classes, self.num_classes), dtype=torch.int64)
        return self._matrix

    def compute(self) -> SegmentationMetrics:
        """The metrics of everything accumulated (one host transfer of the ``K x K`` matrix)."""
        return SegmentationMetrics.from_confusion(self.matrix)


@dataclass(frozen=True)
class SegmentationMetrics:
    """The standard segmentation metrics of one confusion matrix (see the module docstring).

    Attributes:
        pixel_accuracy: float.
        mean_class_accuracy: float (NaN when no pixel is counted).
        mean_iou: float.
        fw_iou: frequency-weighted IoU.
        class_accuracy: float64 ``[K]``, NaN for a class without pixels.
        iou: float64 ``[K]``, NaN when a class is neither present nor predicted.
        pixels: int64 ``[K]`` pixels per true class.
        confusion: int64 ``[K, K]`` (rows: true class, columns: predicted class).
    """

    pixel_accuracy: float
    mean_class_accuracy: float
    mean_iou: float
    fw_iou: float
    class_accuracy: np.ndarray = field(repr=False)
    iou: np.ndarray = field(repr=False)
    pixels: np.ndarray = field(repr=False)
    confusion: np.ndarray = field(repr=False)

    @classmethod
    def from_confusion(cls, confusion: torch.Tensor | np.ndarray) -> SegmentationMetrics:
        """Metrics of a confusion matrix ``[K, K]`` (rows true, columns predicted)."""
        c = (
            confusion.detach().cpu().numpy() if isinstance(confusion, torch.Tensor) else np.asarray(confusion)
        ).astype(np.int64)
        if c.ndim != 2 or c.shape[0] != c.shape[1]:
            raise ConfigError(f"a confusion matrix must be square [K, K], got shape {c.shape}")
        diag = np.diag(c).astype(np.float64)
        rows = c.sum(axis=1).astype(np.float64)
        cols = c.sum(axis=0).astype(np.float64)
        total = float(rows.sum())
        union = rows + cols - diag
        with np.errstate(invalid="ignore", divide="ignore"):
            class_acc = np.where(rows > 0, diag / rows, np.nan)
            iou = np.where(union > 0, diag / union, np.nan)
        present = rows > 0
        pixel_acc = float(diag.sum() / total) if total else math.nan
        mean_acc = float(np.mean(class_acc[present])) if present.any() else math.nan
        defined = ~np.isnan(iou)
        miou = float(np.mean(iou[defined])) if defined.any() else math.nan
        fw = float(np.sum(rows[present] / total * iou[present])) if total else math.nan
        return cls(pixel_acc, mean_acc, miou, fw, class_acc, iou, c.sum(axis=1), c)

    def to_dict(self, class_names: tuple[str, ...] | list[str] | None = None) -> dict[str, object]:
        """JSON-friendly: the four scalars plus per-class accuracy and IoU (by name when given)."""
        names = list(class_names) if class_names is not None else [str(i) for i in range(len(self.iou))]

        def clean(x: float) -> float | None:
            return None if math.isnan(x) else float(x)

        return {
            "pixel_accuracy": clean(self.pixel_accuracy),
            "mean_class_accuracy": clean(self.mean_class_accuracy),
            "mean_iou": clean(self.mean_iou),
            "fw_iou": clean(self.fw_iou),
            "class_accuracy": {n: clean(float(v)) for n, v in zip(names, self.class_accuracy, strict=True)},
            "iou": {n: clean(float(v)) for n, v in zip(names, self.iou, strict=True)},
            "pixels": {n: int(v) for n, v in zip(names, self.pixels, strict=True)},
        }


def segmentation_metrics(
    pred: torch.Tensor | np.ndarray,
    target: torch.Tensor | np.ndarray,
    num_classes: int,
    ignore_index: int | None = None,
) -> SegmentationMetrics:
    """Pixel accuracy, mean class accuracy, per-class accuracy, IoU, mIoU and FWIoU of ``pred`` vs ``target``.

    Args:
        pred: integer ``[*]`` predicted class ids (e.g. ``[N, H, W]``).
        target: integer ``[*]`` true class ids, same shape.
        num_classes: K.
        ignore_index: target value to leave out.
    """
    return SegmentationMetrics.from_confusion(confusion_matrix(pred, target, num_classes, ignore_index))
