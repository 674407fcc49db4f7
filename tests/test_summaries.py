"""Summaries: histograms, the headline dictionary and per-class rates, against numpy references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis.extra import numpy as hnp

from forgetting.events import EventTracker
from forgetting.exceptions import ConfigError
from forgetting.summaries import count_histogram, dynamics_summary, per_class_rates


def t64(*values: int) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.int64)


def test_count_histogram_basic_and_masked() -> None:
    values, freqs = count_histogram(torch.tensor([3, 0, 3, 7, 0, 3], dtype=torch.int32))
    assert values.tolist() == [0, 3, 7] and freqs.tolist() == [2, 3, 1]
    assert values.dtype == np.int64 and freqs.dtype == np.int64
    mask = torch.tensor([True, False, True, True, False, False])
    values, freqs = count_histogram(torch.tensor([3, 0, 3, 7, 0, 3]), mask)
    assert values.tolist() == [3, 7] and freqs.tolist() == [2, 1]
    values, freqs = count_histogram(np.zeros((0,), dtype=np.uint8))
    assert values.shape == (0,) and freqs.shape == (0,)
    values, freqs = count_histogram(np.array([[-2, 1], [1, -2]]))
    assert values.tolist() == [-2, 1] and freqs.tolist() == [2, 2]
    with pytest.raises(ConfigError, match="integer"):
        count_histogram(torch.zeros(3))
    with pytest.raises(ConfigError, match="mask"):
        count_histogram(torch.zeros(3, dtype=torch.int64), torch.ones(2, dtype=torch.bool))


@settings(max_examples=100, deadline=None)
@given(hnp.arrays(np.uint8, hnp.array_shapes(min_dims=1, max_dims=3, max_side=6)))
def test_count_histogram_matches_numpy_unique(counts: np.ndarray) -> None:
    values, freqs = count_histogram(torch.from_numpy(counts))
    ref_values, ref_freqs = np.unique(counts, return_counts=True)
    np.testing.assert_array_equal(values, ref_values)
    np.testing.assert_array_equal(freqs, ref_freqs)


def make_tracker() -> EventTracker:
    """Six samples: targets all 0. Sequences (one column per sample) over three epochs, sample 5 unseen."""
    tr = EventTracker((6,))
    rows = t64(0, 1, 2, 3, 4)
    targets = t64(0, 0, 0, 0, 0)
    tr.update(rows, t64(0, 1, 0, 2, 0), targets, epoch=1)
    tr.update(rows, t64(0, 2, 1, 1, 0), targets, epoch=2)
    tr.update(rows, t64(0, 1, 0, 1, 1), targets, epoch=3)
    # sample 0: always correct (unforgettable); 1: never correct; 2: forgotten then relearned;
    # 3: wrong, switches once; 4: forgotten at the end
    return tr


def test_dynamics_summary_values() -> None:
    tr = make_tracker()
    assert tr.switches.tolist() == [0, 2, 2, 1, 1, 0]
    s = dynamics_summary(tr)
    assert s["n"] == 6 and s["rows"] == 6
    assert s["observed"] == 5 and s["observed_with_targets"] == 5
    assert s["mean_switches"] == pytest.approx(6 / 5)
    assert s["median_switches"] == 1.0
    assert s["switches_histogram"] == {"values": [0, 1, 2], "frequencies": [1, 2, 2]}
    assert s["fraction_unforgettable"] == pytest.approx(1 / 5)  # only sample 0
    assert s["fraction_never_learned"] == pytest.approx(2 / 5)  # samples 1 and 3
    assert s["fraction_forgotten"] == pytest.approx(2 / 5)  # samples 2 and 4
    assert s["mean_forgetting"] == pytest.approx(2 / 5)
    assert s["forgetting_histogram"] == {"values": [0, 1], "frequencies": [3, 2]}
    assert s["switches_saturated"] == 0


def test_dynamics_summary_median_of_even_count_and_unlabeled() -> None:
    tr = EventTracker((4,))
    tr.update(t64(0, 1, 2, 3), t64(0, 0, 0, 0))
    tr.update(t64(0, 1, 2, 3), t64(1, 1, 0, 0))
    tr.update(t64(0, 1, 2, 3), t64(0, 1, 0, 0))
    s = dynamics_summary(tr)  # switches [2, 1, 0, 0]
    assert s["median_switches"] == 0.5
    assert s["observed_with_targets"] == 0
    assert math.isnan(s["fraction_unforgettable"]) and math.isnan(s["fraction_never_learned"])
    assert "forgetting_histogram" not in s


def test_dynamics_summary_of_an_empty_tracker() -> None:
    s = dynamics_summary(EventTracker((3, 2)))
    assert s["n"] == 6 and s["observed"] == 0
    assert math.isnan(s["mean_switches"]) and math.isnan(s["median_switches"])
    assert s["switches_histogram"] == {"values": [], "frequencies": []}


def test_per_class_rates_for_samples() -> None:
    tr = make_tracker()
    labels = t64(0, 1, 1, 2, 0, 2)  # class 2: samples 3 (seen) and 5 (unseen: left out)
    rates = per_class_rates(tr, labels, num_classes=4)
    assert rates["count"].tolist() == [2, 2, 1, 0]
    np.testing.assert_allclose(rates["mean_forgetting"][:3], [0.5, 0.5, 0.0])
    np.testing.assert_allclose(rates["mean_switches"][:3], [0.5, 2.0, 1.0])
    np.testing.assert_allclose(rates["fraction_forgotten"][:3], [0.5, 0.5, 0.0])
    np.testing.assert_allclose(rates["fraction_never_learned"][:3], [0.0, 0.5, 1.0])
    assert all(math.isnan(v[3]) for k, v in rates.items() if k != "count")


def test_per_class_rates_for_pixels_match_numpy() -> None:
    torch.manual_seed(0)
    n, h, w, c = 4, 5, 6, 3
    masks = torch.randint(0, c, (n, h, w))
    masks[:, :, 0] = 255
    tr = EventTracker((n, h, w), ignore_index=255)
    for e in range(5):
        rows = torch.randperm(n)[:3]
        tr.update(rows, torch.randint(0, c, (3, h, w)), masks[rows], epoch=e)
    rates = per_class_rates(tr, masks, num_classes=c, ignore_index=255)
    m = masks.numpy()
    seen = tr.seen.numpy()
    fg = tr.forgetting.numpy()
    sw = tr.switches.numpy()
    for k in range(c):
        sel = seen & (m == k)
        assert rates["count"][k] == sel.sum()
        assert rates["mean_forgetting"][k] == pytest.approx(fg[sel].mean())
        assert rates["mean_switches"][k] == pytest.approx(sw[sel].mean())
        assert rates["fraction_forgotten"][k] == pytest.approx((fg[sel] > 0).mean())
    assert rates["count"].sum() == (seen & (m != 255)).sum()


def test_per_class_rates_validates_labels() -> None:
    tr = make_tracker()
    with pytest.raises(ConfigError, match=r"\[0, 2\)"):
        per_class_rates(tr, t64(0, 1, 2, 0, 0, 0), num_classes=2)
    with pytest.raises(ConfigError, match="shape"):
        per_class_rates(tr, t64(0, 1), num_classes=2)
    # an out-of-range label on an unobserved element does not matter
    rates = per_class_rates(tr, t64(0, 1, 1, 0, 0, 9), num_classes=2)
    assert rates["count"].tolist() == [3, 2]
