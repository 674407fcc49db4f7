"""Region statistics of forgetting maps, on hand-made maps and a hand-driven EventTracker."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from forgetting.events import EventTracker
from forgetting.exceptions import ConfigError, DatasetFormatError
from forgetting.segmentation import (
    TEMPORAL_GROUPS,
    analyze_forgetting,
    boundary_distance,
    connected_regions,
    frequently_forgotten,
    per_class_forgetting,
    spearman,
    spearman_by_class,
    temporal_groups,
    valid_mask,
    within_class_rho,
)
from forgetting.segmentation.report import boundary_segments, pick_sections

# Two 5x6 sections of forgetting counts. Section 0: an L-shaped blob (5 px), a diagonal pair, a single pixel
# below tau. Section 1: a 2x2 block at the same place as section 0's L (it must not merge with it).
FORGETTING = np.array(
    [
        [
            [3, 3, 0, 0, 0, 0],
            [3, 0, 0, 0, 2, 0],
            [3, 3, 0, 0, 0, 2],
            [0, 0, 0, 0, 0, 0],
            [0, 0, 0, 1, 0, 0],
        ],
        [
            [4, 4, 0, 0, 0, 0],
            [4, 4, 0, 0, 0, 0],
            [0, 0, 0, 0, 0, 0],
            [0, 0, 0, 0, 0, 0],
            [0, 0, 0, 0, 0, 9],
        ],
    ]
)
MASKS = np.zeros((2, 5, 6), dtype=np.int64)
MASKS[:, :, 3:] = 1  # class 0 on the left, class 1 on the right
MASKS[1, 4, 5] = 255  # an ignored pixel (with a high count that must not count)


def test_frequently_forgotten_and_valid_mask() -> None:
    valid = valid_mask(MASKS, 255)
    assert valid.sum() == 59
    freq = frequently_forgotten(FORGETTING, 2, valid)
    assert freq.sum() == 5 + 2 + 4
    assert not freq[1, 4, 5]  # ignored
    assert frequently_forgotten(torch.from_numpy(FORGETTING), 4).sum() == 5
    with pytest.raises(ConfigError, match="tau"):
        frequently_forgotten(FORGETTING, 0)
    with pytest.raises(ConfigError, match=r"\[N, H, W\]"):
        frequently_forgotten(FORGETTING[0], 2)


def test_connected_regions_by_hand() -> None:
    freq = frequently_forgotten(FORGETTING, 2, valid_mask(MASKS, 255))
    eight = connected_regions(freq, masks_N_H_W=MASKS, num_classes=2, connectivity=2)
    # section 0: the L (5 px) and the diagonal pair (2 px); section 1: the block (4 px); never merged
    assert eight.count == 3 and eight.total_area == 11
    assert sorted(zip(eight.section.tolist(), eight.area.tolist(), strict=True)) == [(0, 2), (0, 5), (1, 4)]
    by_area = dict(zip(eight.area.tolist(), eight.majority_class.tolist(), strict=True))
    assert by_area == {5: 0, 2: 1, 4: 0}
    assert eight.per_class()["count"].tolist() == [2, 1] and eight.per_class()["area"].tolist() == [9, 2]
    assert eight.labels.dtype == np.int32 and set(np.unique(eight.labels)) == {0, 1, 2, 3}
    assert eight.summary() == {
        "count": 3,
        "total_area": 11,
        "mean_area": 11 / 3,
        "median_area": 4.0,
        "max_area": 5,
    }
    four = connected_regions(freq, connectivity=1)
    assert four.count == 4 and sorted(four.area.tolist()) == [1, 1, 4, 5]  # the diagonal pair splits
    assert four.majority_class.tolist() == [-1] * 4 and four.per_class()["count"].size == 0
    big = connected_regions(freq, masks_N_H_W=MASKS, num_classes=2, connectivity=2, min_area=4)
    assert big.count == 2 and sorted(big.area.tolist()) == [4, 5]
    assert set(np.unique(big.labels)) == {0, 1, 2}  # relabelled consecutively
    assert (big.labels > 0).sum() == 9
    none = connected_regions(np.zeros((2, 3, 3), dtype=bool))
    assert none.count == 0 and math.isnan(none.summary()["mean_area"])


def test_per_class_forgetting_by_hand() -> None:
    never = np.zeros_like(MASKS, dtype=bool)
    never[0, 0, 5] = True
    rates = per_class_forgetting(FORGETTING, MASKS, 2, tau=2, ignore_index=255, never_learned_N_H_W=never)
    # class 0 (columns 0-2): 30 px; counts 3*5 + 4*4 = 31; forgotten: 9 px; >= 2: 9 px
    # class 1 (columns 3-5, one ignored): 29 px; counts 2 + 2 + 1 = 5; forgotten 3 px; >= 2: 2 px
    assert rates["pixels"].tolist() == [30, 29]
    assert rates["mean_forgetting"].tolist() == pytest.approx([31 / 30, 5 / 29])
    assert rates["fraction_forgotten"].tolist() == pytest.approx([9 / 30, 3 / 29])
    assert rates["fraction_frequent"].tolist() == pytest.approx([9 / 30, 2 / 29])
    assert rates["fraction_never_learned"].tolist() == pytest.approx([0.0, 1 / 29])
    three = per_class_forgetting(FORGETTING, MASKS, 3, tau=2, ignore_index=255)
    assert three["pixels"][2] == 0 and math.isnan(three["mean_forgetting"][2])


def test_boundary_distance() -> None:
    masks = np.zeros((3, 3, 8), dtype=np.int64)
    masks[0, :, 4:] = 1  # section 0: a vertical boundary between columns 3 and 4
    masks[1, 0, 0] = 2  # section 1: one pixel of class 2 in the corner
    masks[2] = 1  # section 2: a single class: no boundary
    masks[0, 2, 0] = 255
    d = boundary_distance(masks, ignore_index=255)
    assert d.dtype == np.float32
    assert d[0, 0].tolist() == [4, 3, 2, 1, 1, 2, 3, 4]
    assert math.isnan(d[0, 2, 0]) and d[0, 2, 1] == 3  # ignored pixels are neither class nor boundary
    i, j = np.mgrid[0:3, 0:8]
    expected = np.sqrt(i**2 + j**2)
    expected[0, 0] = 1.0  # the class-2 pixel itself: its nearest other-class pixel is a neighbour
    assert np.allclose(d[1], expected)
    assert np.all(np.isinf(d[2]))


def test_temporal_groups_by_hand() -> None:
    shape = (1, 1, 6)
    forgetting = np.array([0, 1, 2, 1, 0, 0]).reshape(shape)
    last = np.array([-1, 3, 9, 4, -1, -1]).reshape(shape)
    learned = np.array([2, 4, 10, -1, -1, 5]).reshape(shape)
    never = np.array([False, False, False, False, True, False]).reshape(shape)
    valid = np.array([True, True, True, True, True, False]).reshape(shape)
    t = temporal_groups(forgetting, last, learned, never, epochs=10, early_fraction=0.5, valid_N_H_W=valid)
    assert t.early_until == 5
    assert t.group.reshape(-1).tolist() == [0, 1, 2, 3, 4, -1]
    assert t.counts.tolist() == [1, 1, 1, 1, 1]
    assert t.fractions()[TEMPORAL_GROUPS[2]] == pytest.approx(0.2)
    assert t.last_forgotten_hist.tolist() == [0, 0, 0, 1, 1, 0, 0, 0, 0, 1, 0]
    assert t.learned_hist.tolist() == [0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 1]
    with pytest.raises(ConfigError, match="early_fraction"):
        temporal_groups(forgetting, last, learned, never, epochs=10, early_fraction=1.0)


def _tracker_from_history(correct_E_P: list[list[int]], target: int = 1) -> tuple[EventTracker, np.ndarray]:
    """A (1, 1, P) tracker fed one epoch per row: 1 = predicted the target, 0 = predicted class 0."""
    history = np.array(correct_E_P)
    tracker = EventTracker((1, 1, history.shape[1]), ignore_index=255)
    masks = np.full((1, 1, history.shape[1]), target)
    for epoch, row in enumerate(history, start=1):
        preds = torch.from_numpy(np.where(row == 1, target, 0)).view(1, 1, -1)
        tracker.update(torch.tensor([0]), preds, torch.from_numpy(masks), epoch=epoch)
    return tracker, masks


def test_analyze_forgetting_on_a_tracker() -> None:
    # pixels: stable, forgotten early (epoch 2), forgotten late (epoch 5), unsettled, never learned
    tracker, masks = _tracker_from_history(
        [
            [1, 1, 0, 1, 0],
            [1, 0, 1, 1, 0],
            [1, 1, 1, 1, 0],
            [1, 1, 1, 1, 0],
            [1, 1, 0, 0, 0],
            [1, 1, 1, 0, 0],
        ]
    )
    margin = np.array([0.9, 0.8, 0.5, 0.1, 0.2], dtype=np.float32).reshape(1, 1, 5)
    a = analyze_forgetting(
        tracker,
        masks,
        class_names=("zero", "one"),
        ignore_index=255,
        margin_N_H_W=margin,
        tau=1,
        min_region_area=1,
    )
    assert a.epochs == 6 and a.forgetting.reshape(-1).tolist() == [0, 1, 1, 1, 0]
    assert a.temporal.group.reshape(-1).tolist() == [0, 1, 2, 3, 4]
    assert a.frequent.reshape(-1).tolist() == [False, True, True, True, False]
    assert a.regions.count == 1 and a.regions.total_area == 3
    assert a.per_class["fraction_forgotten"][1] == pytest.approx(0.6) and a.per_class["pixels"][0] == 0
    assert a.per_class["fraction_never_learned"][1] == pytest.approx(0.2)
    assert a.margin_correlation is not None
    assert a.margin_correlation.rho == pytest.approx(spearman(a.forgetting, margin).rho)
    assert math.isnan(a.distance_correlation.rho)  # one class: no boundary anywhere
    summary = a.summary()
    assert summary["regions"]["count"] == 1 and summary["temporal"]["pixels"]["late"] == 1
    assert summary["correlation_forgetting_distance"]["rho"] is None
    assert summary["correlation_forgetting_margin"]["by_class"]["zero"] is None  # class without pixels
    assert summary["correlation_forgetting_margin"]["within_class_rho"] == pytest.approx(
        a.margin_correlation.rho
    )  # a single class: within-class = pooled
    assert set(a.arrays("train_")) >= {"train_forgetting", "train_margin", "train_regions"}
    with pytest.raises(DatasetFormatError, match=r"outside 0\.\.0"):
        analyze_forgetting(tracker, masks, class_names=("zero",), ignore_index=255)


def test_spearman() -> None:
    x = np.arange(100, dtype=float).reshape(1, 10, 10)
    assert spearman(x, 2 * x + 1).rho == pytest.approx(1.0)
    assert spearman(x, -(x**3)).rho == pytest.approx(-1.0)
    assert math.isnan(spearman(x, np.ones_like(x)).rho)
    y = x.copy()
    y[0, 0, :5] = np.inf  # non-finite values are left out
    valid = np.ones_like(x, dtype=bool)
    valid[0, 9] = False
    c = spearman(x, y, valid)
    assert c.n == 85 and c.n_total == 85 and c.rho == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    a, b = rng.random(5000), rng.random(5000)
    s1, s2 = spearman(a, b, max_points=1000, seed=3), spearman(a, b, max_points=1000, seed=3)
    assert s1 == s2 and s1.n == 1000 and s1.n_total == 5000
    with pytest.raises(ConfigError, match="differ in shape"):
        spearman(a, b[:10])


def test_within_class_correlation_resolves_simpsons_paradox() -> None:
    # inside each class more forgetting goes with a smaller margin, but the class with more forgetting is
    # also the more confident one: the pooled rho is positive, the within-class rho is -1
    forgetting = np.array([0, 1, 2, 3, 10, 11, 12, 13], dtype=float).reshape(1, 1, 8)
    margin = np.array([3, 2, 1, 0, 13, 12, 11, 10], dtype=float).reshape(1, 1, 8)
    masks = np.array([0, 0, 0, 0, 1, 1, 1, 1]).reshape(1, 1, 8)
    assert spearman(forgetting, margin).rho > 0.4
    by_class = spearman_by_class(forgetting, margin, masks, 3)
    assert [c.rho for c in by_class[:2]] == pytest.approx([-1.0, -1.0]) and math.isnan(by_class[2].rho)
    assert within_class_rho(by_class) == pytest.approx(-1.0)
    assert math.isnan(within_class_rho(by_class[2:]))


def test_report_helpers() -> None:
    mask = np.array([[0, 0, 1], [0, 2, 1]])
    segments = boundary_segments(mask)
    # vertical edges: (0,1)|(0,2), (1,0)|(1,1), (1,1)|(1,2); horizontal: (0,1)-(1,1)
    assert segments.shape == (4, 2, 2)
    assert sorted(map(tuple, segments.reshape(4, 4).tolist())) == [
        (0.5, 0.5, 0.5, 1.5),
        (0.5, 0.5, 1.5, 0.5),
        (1.5, -0.5, 1.5, 0.5),
        (1.5, 0.5, 1.5, 1.5),
    ]
    ignore = np.array([[False, False, True], [False, False, True]])
    assert boundary_segments(mask, ignore).shape == (2, 2, 2)
    tracker, masks = _tracker_from_history([[1, 1, 0], [0, 1, 1], [1, 1, 0]])
    a = analyze_forgetting(tracker, masks, class_names=("a", "b"), tau=1, min_region_area=1)
    assert pick_sections(a, 3) == [0] and pick_sections(a, [0, 5]) == [0]
