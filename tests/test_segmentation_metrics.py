"""Segmentation metrics against hand-computed values, and the segmentation trainer's helpers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from forgetting.data.dataset import Split
from forgetting.exceptions import ConfigError
from forgetting.segmentation import (
    ConfusionMatrix,
    SegmentationMetrics,
    class_weights_from_masks,
    confusion_matrix,
    evaluate_segmentation,
    predict_segmentation,
    segmentation_metrics,
)

IGNORE = 255

# Two 2x4 sections, 3 classes, two ignored pixels.
TARGET = torch.tensor(
    [
        [[0, 0, 0, 1], [1, 1, 2, IGNORE]],
        [[0, 0, 1, 1], [2, 2, 2, IGNORE]],
    ]
)
PRED = torch.tensor(
    [
        [[0, 0, 1, 1], [1, 2, 2, 0]],
        [[0, 1, 1, 1], [2, 2, 0, 2]],
    ]
)
# Counted by hand over the 14 valid pixels (rows: true, columns: predicted):
#   true 0 (5 px): predicted 0,0,1 | 0,1        -> [3, 2, 0]
#   true 1 (5 px): predicted 1,1,2 | 1,1        -> [0, 4, 1]
#   true 2 (4 px): predicted 2     | 2,2,0      -> [1, 0, 3]
EXPECTED = np.array([[3, 2, 0], [0, 4, 1], [1, 0, 3]])


def test_confusion_matrix_by_hand() -> None:
    cm = confusion_matrix(PRED, TARGET, 3, ignore_index=IGNORE)
    assert cm.dtype == torch.int64 and cm.tolist() == EXPECTED.tolist()
    # numpy inputs give the same; without ignore_index the 255 pixels are out of range and still left out
    assert np.array_equal(confusion_matrix(PRED.numpy(), TARGET.numpy(), 3, IGNORE).numpy(), EXPECTED)
    assert np.array_equal(confusion_matrix(PRED, TARGET, 3).numpy(), EXPECTED)


def test_metrics_by_hand() -> None:
    m = segmentation_metrics(PRED, TARGET, 3, ignore_index=IGNORE)
    assert m.pixel_accuracy == pytest.approx(10 / 14)
    assert m.class_accuracy.tolist() == pytest.approx([3 / 5, 4 / 5, 3 / 4])
    assert m.mean_class_accuracy == pytest.approx((3 / 5 + 4 / 5 + 3 / 4) / 3)
    # IoU_c = C[c,c] / (row_c + col_c - C[c,c]); columns sum to [4, 6, 4]
    iou = [3 / (5 + 4 - 3), 4 / (5 + 6 - 4), 3 / (4 + 4 - 3)]
    assert m.iou.tolist() == pytest.approx(iou)
    assert m.mean_iou == pytest.approx(sum(iou) / 3)
    assert m.fw_iou == pytest.approx((5 * iou[0] + 5 * iou[1] + 4 * iou[2]) / 14)
    assert m.pixels.tolist() == [5, 5, 4]
    d = m.to_dict(("a", "b", "c"))
    assert d["class_accuracy"]["b"] == pytest.approx(0.8) and d["pixels"]["c"] == 4


def test_absent_classes() -> None:
    # class 2 predicted but never true: accuracy undefined (NaN, left out of the mean), IoU 0 (counted);
    # class 3 neither true nor predicted: IoU undefined and left out of mIoU
    target = torch.tensor([0, 0, 1, 1])
    pred = torch.tensor([0, 2, 1, 1])
    m = segmentation_metrics(pred, target, 4)
    assert math.isnan(m.class_accuracy[2]) and math.isnan(m.class_accuracy[3])
    assert m.mean_class_accuracy == pytest.approx((0.5 + 1.0) / 2)
    assert m.iou[2] == 0.0 and math.isnan(m.iou[3])
    assert m.mean_iou == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    assert m.fw_iou == pytest.approx(0.5 * 0.5 + 0.5 * 1.0)
    assert m.to_dict()["iou"]["3"] is None
    empty = segmentation_metrics(torch.zeros(3, dtype=torch.long), torch.full((3,), IGNORE), 2, IGNORE)
    assert empty.pixels.sum() == 0 and math.isnan(empty.pixel_accuracy) and math.isnan(empty.mean_iou)


def test_agrees_with_sklearn_and_accumulates() -> None:
    from sklearn.metrics import confusion_matrix as sk_confusion

    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, 5, (6, 9, 7), generator=g)
    target[torch.rand(target.shape, generator=g) < 0.1] = IGNORE
    pred = torch.randint(0, 5, (6, 9, 7), generator=g)
    valid = (target != IGNORE).numpy()
    expected = sk_confusion(target.numpy()[valid], pred.numpy()[valid], labels=range(5))
    acc = ConfusionMatrix(5, ignore_index=IGNORE)
    for i in range(0, 6, 4):  # two uneven batches
        acc.update(pred[i : i + 4], target[i : i + 4])
    assert np.array_equal(acc.matrix.numpy(), expected)
    m = acc.compute()
    assert isinstance(m, SegmentationMetrics) and m.pixel_accuracy == pytest.approx(
        np.trace(expected) / valid.sum()
    )
    assert ConfusionMatrix(2).matrix.tolist() == [[0, 0], [0, 0]]


def test_bad_inputs() -> None:
    with pytest.raises(ConfigError, match="same shape"):
        confusion_matrix(torch.zeros(3, dtype=torch.long), torch.zeros(4, dtype=torch.long), 2)
    with pytest.raises(ConfigError, match="integer"):
        confusion_matrix(torch.zeros(3), torch.zeros(3, dtype=torch.long), 2)
    with pytest.raises(ConfigError, match="num_classes"):
        confusion_matrix(torch.zeros(3, dtype=torch.long), torch.zeros(3, dtype=torch.long), 0)
    with pytest.raises(ConfigError, match="square"):
        SegmentationMetrics.from_confusion(np.zeros((2, 3)))


class _Fixed(nn.Module):
    """A 'model' whose logits are the one-hot of fixed predictions (and a learnable dummy parameter)."""

    def __init__(self, pred_N_H_W: torch.Tensor, k: int) -> None:
        super().__init__()
        self.pred = pred_N_H_W
        self.k = k
        self.dummy = nn.Parameter(torch.zeros(()))
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        out = nn.functional.one_hot(self.pred[self.calls : self.calls + b], self.k).permute(0, 3, 1, 2)
        self.calls += b
        return out.float() * 3.0 + self.dummy


def test_evaluate_and_predict_segmentation() -> None:
    images = torch.zeros((2, 1, 2, 4), dtype=torch.uint8)
    data = Split(images, TARGET.clone())
    m = evaluate_segmentation(_Fixed(PRED, 3), data, num_classes=3, ignore_index=IGNORE, batch_size=1)
    assert m.confusion.tolist() == EXPECTED.tolist()
    pred, margin = predict_segmentation(_Fixed(PRED, 3), images, batch_size=2)
    assert torch.equal(pred, PRED)
    # softmax of (3, 0, 0): top-1 minus top-2 probability
    p = math.exp(3) / (math.exp(3) + 2)
    assert margin.shape == (2, 2, 4) and torch.allclose(margin, torch.full_like(margin, p - (1 - p) / 2))


def test_class_weights() -> None:
    masks = torch.tensor([[[0, 0, 0, 0], [0, 0, 1, 1]], [[0, 0, 1, 1], [3, 3, IGNORE, IGNORE]]])
    # valid pixels: class 0: 8, class 1: 4, class 2: 0, class 3: 2 (of 14)
    median = class_weights_from_masks(masks, 4, scheme="median", ignore_index=IGNORE)
    assert median.tolist() == pytest.approx([4 / 8, 4 / 4, 0.0, 4 / 2])  # median frequency is class 1's
    balanced = class_weights_from_masks(masks, 4, scheme="balanced", ignore_index=IGNORE)
    assert balanced.tolist() == pytest.approx([14 / (3 * 8), 14 / (3 * 4), 0.0, 14 / (3 * 2)])
    assert class_weights_from_masks(masks, 4, scheme="none").tolist() == [1.0] * 4
    assert class_weights_from_masks(masks, 4, scheme=[1, 2, 3, 4]).tolist() == [1, 2, 3, 4]
    with pytest.raises(ConfigError, match="4 non-negative"):
        class_weights_from_masks(masks, 4, scheme=[1.0, 2.0])
    with pytest.raises(ConfigError, match="median"):
        class_weights_from_masks(masks, 4, scheme="inverse")  # type: ignore[arg-type]
