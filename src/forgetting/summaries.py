"""Summaries of an :class:`~forgetting.events.EventTracker`: histograms, headline fractions, per-class rates.

Everything is computed with ``bincount`` on the tracker's device and only small arrays (one bin per count
value or per class) move to the host, so summaries of segmentation trackers with 10^8 pixels stay cheap.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from forgetting.events import EventTracker
from forgetting.exceptions import ConfigError

__all__ = ["count_histogram", "dynamics_summary", "per_class_rates"]


def _as_tensor(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))


def count_histogram(
    counts: torch.Tensor | np.ndarray, mask: torch.Tensor | np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values of an integer count array and how often each occurs.

    Args:
        counts: integer tensor or array of any shape (e.g. ``tracker.switches``).
        mask: optional bool of the same shape; only ``True`` elements are counted.

    Returns:
        ``(values, frequencies)``: int64 numpy ``[K]`` each, ``values`` ascending, every frequency >= 1.
        Both are empty when nothing is counted.
    """
    c = _as_tensor(counts)
    if c.dtype.is_floating_point or c.dtype.is_complex or c.dtype == torch.bool:
        raise ConfigError(f"count_histogram needs integer counts, got {c.dtype}")
    c = c.reshape(-1)
    if mask is not None:
        m = _as_tensor(mask).to(c.device)
        if m.dtype != torch.bool or m.numel() != c.numel():
            raise ConfigError(
                f"count_histogram mask must be bool with {c.numel()} elements, got {m.dtype} {tuple(m.shape)}"
            )
        c = c[m.reshape(-1)]
    if c.numel() == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    lo, hi = (int(v) for v in torch.aminmax(c))
    if lo < 0:  # not a count array; fall back to a sort
        values, freqs = np.unique(c.cpu().numpy(), return_counts=True)
        return values.astype(np.int64), freqs.astype(np.int64)
    freqs_all = torch.bincount(c, minlength=hi + 1)
    freqs_np = freqs_all.cpu().numpy().astype(np.int64)
    values = np.flatnonzero(freqs_np).astype(np.int64)
    return values, freqs_np[values]


def _hist_stats(values: np.ndarray, freqs: np.ndarray) -> tuple[float, float]:
    """Mean and median (numpy convention: the middle two averaged) of the data a histogram describes."""
    total = int(freqs.sum())
    if total == 0:
        return math.nan, math.nan
    mean = float((values * freqs).sum() / total)
    cum = np.cumsum(freqs)
    lower = values[np.searchsorted(cum, (total - 1) // 2, side="right")]
    upper = values[np.searchsorted(cum, total // 2, side="right")]
    return mean, float(lower + upper) / 2.0


def _fraction(num: int, den: int) -> float:
    return num / den if den else math.nan


def dynamics_summary(tracker: EventTracker) -> dict[str, Any]:
    """Headline numbers of a tracker, JSON-friendly (Python ints, floats and lists; NaN when undefined).

    Keys:
        ``n``: elements; ``rows``: N; ``observed``: elements observed at least once;
        ``observed_with_targets``: elements observed with a (non-ignored) target;
        ``mean_switches``, ``median_switches``: over observed elements;
        ``switches_saturated``: observed elements whose switch counter reached ``counter_max``;
        ``switches_histogram``: ``{"values": [...], "frequencies": [...]}`` over observed elements;
        ``fraction_unforgettable``: among elements observed with targets, those ever correct and never
        forgotten; ``fraction_never_learned``: among them, those never correct (Toneva et al.'s most
        forgettable, not 'zero forgetting'); ``fraction_forgotten``: among them, those forgotten at least
        once; ``mean_forgetting``: among them. With targets only: ``forgetting_histogram`` (same form).
    """
    seen = tracker.seen
    labeled = tracker.observed_with_targets
    switches = tracker.switches
    n_seen = int(seen.sum())
    n_labeled = int(labeled.sum())
    sv, sf = count_histogram(switches, seen)
    mean_sw, median_sw = _hist_stats(sv, sf)
    out: dict[str, Any] = {
        "n": tracker.numel,
        "rows": tracker.n,
        "observed": n_seen,
        "observed_with_targets": n_labeled,
        "mean_switches": mean_sw,
        "median_switches": median_sw,
        "switches_saturated": int(sf[sv >= tracker.counter_max].sum()),
        "switches_histogram": {"values": sv.tolist(), "frequencies": sf.tolist()},
    }
    forgetting = tracker.forgetting
    fv, ff = count_histogram(forgetting, labeled)
    unforgettable = int((labeled & tracker.ever_correct & (forgetting == 0)).sum())
    never = int(tracker.never_learned.sum())
    out["fraction_unforgettable"] = _fraction(unforgettable, n_labeled)
    out["fraction_never_learned"] = _fraction(never, n_labeled)
    out["fraction_forgotten"] = _fraction(int(ff[fv > 0].sum()), n_labeled)
    out["mean_forgetting"] = _hist_stats(fv, ff)[0]
    if n_labeled:
        out["forgetting_histogram"] = {"values": fv.tolist(), "frequencies": ff.tolist()}
    return out


def per_class_rates(
    tracker: EventTracker,
    masks_or_labels: torch.Tensor | np.ndarray,
    num_classes: int,
    ignore_index: int | None = None,
) -> dict[str, np.ndarray]:
    """Per-class forgetting and switching of the observed elements, by true class.

    Args:
        tracker: a tracker of shape ``(N,)`` (samples) or ``(N, H, W)`` (pixels).
        masks_or_labels: integer labels ``[N]`` or masks ``[N, H, W]``, the tracker's shape.
        num_classes: C; labels must lie in ``[0, C)`` apart from ``ignore_index``.
        ignore_index: label value to leave out (defaults to none).

    Returns:
        ``count``: int64 ``[C]`` observed elements per class; ``mean_forgetting``, ``mean_switches``: float64
        ``[C]`` mean counts; ``fraction_forgotten``: float64 ``[C]`` share with at least one forgetting event;
        ``fraction_never_learned``: float64 ``[C]`` share observed with targets and never correct. NaN for a
        class with no observed element. Forgetting rates are zero when the tracker never received targets.
    """
    if num_classes < 1:
        raise ConfigError(f"per_class_rates num_classes must be >= 1, got {num_classes}")
    state_device = tracker.seen.device
    labels = _as_tensor(masks_or_labels).to(state_device)
    if tuple(labels.shape) != tracker.shape:
        raise ConfigError(
            f"per_class_rates labels/masks shape {tuple(labels.shape)} must equal the tracker shape "
            f"{tracker.shape}"
        )
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ConfigError(f"per_class_rates labels/masks must be integer class ids, got {labels.dtype}")
    labels = labels.to(torch.int64).reshape(-1)
    keep = tracker.seen.reshape(-1)
    if ignore_index is not None:
        keep = keep & (labels != ignore_index)
    bad = keep & ((labels < 0) | (labels >= num_classes))
    if bool(bad.any()):
        bad_values = torch.unique(labels[bad]).cpu().tolist()[:10]
        raise ConfigError(
            f"per_class_rates labels must lie in [0, {num_classes}) (or equal ignore_index={ignore_index}); "
            f"found {bad_values}"
        )
    # Parked class C collects the elements left out, so every sum is one pass without boolean masking.
    cls = torch.where(keep, labels, num_classes)
    width = num_classes + 1

    def per_class_sum(values: torch.Tensor) -> np.ndarray:
        sums = torch.zeros(width, dtype=torch.int64, device=cls.device)
        sums.index_add_(0, cls, values.reshape(-1).to(torch.int64))
        return sums[:num_classes].cpu().numpy()

    count = torch.bincount(cls, minlength=width)[:num_classes].cpu().numpy().astype(np.int64)
    forgetting = tracker.forgetting
    with np.errstate(invalid="ignore", divide="ignore"):
        den = count.astype(np.float64)
        den[count == 0] = np.nan
        return {
            "count": count,
            "mean_forgetting": per_class_sum(forgetting) / den,
            "mean_switches": per_class_sum(tracker.switches) / den,
            "fraction_forgotten": per_class_sum(forgetting > 0) / den,
            "fraction_never_learned": per_class_sum(tracker.never_learned) / den,
        }
