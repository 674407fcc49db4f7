"""Region statistics of per-pixel forgetting maps (numpy on the host; inputs ``[N, H, W]``, one section
per row).

* :func:`frequently_forgotten`: the mask ``forgetting >= tau`` over valid pixels.
* :func:`connected_regions`: its connected components within each section (``scipy.ndimage.label`` with a
  structuring element that never connects two sections): number, area, section and majority class of each.
* :func:`per_class_forgetting`: forgetting rates by true class.
* :func:`boundary_distance`: each pixel's Euclidean distance to the nearest pixel of another class
  (``scipy.ndimage.distance_transform_edt``).
* :func:`temporal_groups`: when pixels were forgotten: never, early, late, never settled, never learned.
* :func:`spearman`: Spearman's rank correlation of two per-pixel maps over valid pixels (``scipy.stats``);
  :func:`spearman_by_class` and :func:`within_class_rho` the same within each true class (a pooled
  correlation can mislead when classes differ in both quantities: Simpson's paradox).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import ndimage, stats

from forgetting.exceptions import ConfigError

__all__ = [
    "TEMPORAL_GROUPS",
    "Correlation",
    "RegionStats",
    "TemporalGroups",
    "boundary_distance",
    "connected_regions",
    "frequently_forgotten",
    "per_class_forgetting",
    "spearman",
    "spearman_by_class",
    "temporal_groups",
    "valid_mask",
    "within_class_rho",
]

#: The temporal groups of :func:`temporal_groups`, in id order.
TEMPORAL_GROUPS: tuple[str, ...] = ("never_forgotten", "early", "late", "never_settled", "never_learned")


def _np(x: torch.Tensor | np.ndarray) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _check_stack(name: str, x: np.ndarray, shape: tuple[int, ...] | None = None) -> None:
    if x.ndim != 3:
        raise ConfigError(f"{name} must be a stack of sections [N, H, W], got shape {x.shape}")
    if shape is not None and x.shape != shape:
        raise ConfigError(f"{name} has shape {x.shape}, expected {shape} like the other maps")


def valid_mask(masks_N_H_W: torch.Tensor | np.ndarray, ignore_index: int | None = None) -> np.ndarray:
    """bool ``[N, H, W]``: pixels whose label is not ``ignore_index``."""
    masks = _np(masks_N_H_W)
    _check_stack("masks", masks)
    if ignore_index is None:
        return np.ones(masks.shape, dtype=bool)
    return masks != ignore_index


def frequently_forgotten(
    forgetting_N_H_W: torch.Tensor | np.ndarray, tau: int, valid_N_H_W: np.ndarray | None = None
) -> np.ndarray:
    """bool ``[N, H, W]``: valid pixels forgotten at least ``tau`` times.

    Args:
        forgetting_N_H_W: integer forgetting counts.
        tau: threshold, an integer >= 1.
        valid_N_H_W: optional bool mask of the pixels that count (e.g. from :func:`valid_mask`).
    """
    if isinstance(tau, bool) or not isinstance(tau, int | np.integer) or tau < 1:
        raise ConfigError(f"tau (the frequently-forgotten threshold) must be an integer >= 1, got {tau!r}")
    counts = _np(forgetting_N_H_W)
    _check_stack("forgetting", counts)
    mask = counts >= tau
    if valid_N_H_W is not None:
        _check_stack("valid", np.asarray(valid_N_H_W), counts.shape)
        mask &= np.asarray(valid_N_H_W, dtype=bool)
    return mask


@dataclass(frozen=True)
class RegionStats:
    """Connected regions of a bool map ``[N, H, W]``, each inside one section.

    Attributes:
        labels: int32 ``[N, H, W]``: region id ``1..R`` per pixel, 0 outside every region (regions smaller
            than ``min_area`` are dropped and relabelled away).
        area: int64 ``[R]`` pixels per region (region ``r`` is ``area[r - 1]``).
        section: int64 ``[R]`` the section holding each region.
        majority_class: int64 ``[R]`` the most frequent true class inside each region (-1 without masks).
        num_classes: K (0 without masks).
    """

    labels: np.ndarray = field(repr=False)
    area: np.ndarray
    section: np.ndarray
    majority_class: np.ndarray
    num_classes: int = 0

    @property
    def count(self) -> int:
        """Number of regions R."""
        return int(self.area.size)

    @property
    def total_area(self) -> int:
        """Pixels inside any region."""
        return int(self.area.sum())

    def per_class(self) -> dict[str, np.ndarray]:
        """``count`` and ``area``: int64 ``[K]`` regions (and their pixels) by majority class."""
        k = self.num_classes
        if k == 0:
            return {"count": np.zeros(0, np.int64), "area": np.zeros(0, np.int64)}
        cls = self.majority_class
        return {
            "count": np.bincount(cls, minlength=k)[:k].astype(np.int64),
            "area": np.bincount(cls, weights=self.area, minlength=k)[:k].astype(np.int64),
        }

    def summary(self) -> dict[str, float | int]:
        """Count, total / mean / median / largest area (JSON-friendly; NaN areas when there is no region)."""
        a = self.area
        return {
            "count": self.count,
            "total_area": self.total_area,
            "mean_area": float(a.mean()) if a.size else math.nan,
            "median_area": float(np.median(a)) if a.size else math.nan,
            "max_area": int(a.max()) if a.size else 0,
        }


def connected_regions(
    mask_N_H_W: np.ndarray,
    *,
    masks_N_H_W: torch.Tensor | np.ndarray | None = None,
    num_classes: int | None = None,
    connectivity: int = 1,
    min_area: int = 1,
) -> RegionStats:
    """Connected components of ``mask_N_H_W`` within each section, with their areas and classes.

    One ``scipy.ndimage.label`` call labels the whole stack: the structuring element is the 2-D one
    (4-neighbourhood for ``connectivity=1``, 8-neighbourhood for ``2``) placed in the middle plane of a 3-D
    element, so a region never spans two sections.

    Args:
        mask_N_H_W: bool ``[N, H, W]`` (e.g. from :func:`frequently_forgotten`).
        masks_N_H_W: optional integer true labels ``[N, H, W]`` for each region's majority class; pixels of a
            region always have labels in ``0..K-1`` when the mask was restricted to valid pixels.
        num_classes: K (needed with ``masks_N_H_W``).
        connectivity: 1 (edges) or 2 (edges and corners).
        min_area: regions with fewer pixels are dropped.
    """
    mask = np.asarray(mask_N_H_W, dtype=bool)
    _check_stack("mask", mask)
    if connectivity not in (1, 2):
        raise ConfigError(
            f"connectivity must be 1 (4-neighbourhood) or 2 (8-neighbourhood), got {connectivity!r}"
        )
    if isinstance(min_area, bool) or not isinstance(min_area, int | np.integer) or min_area < 1:
        raise ConfigError(f"min_area must be an integer >= 1, got {min_area!r}")
    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = ndimage.generate_binary_structure(2, connectivity)
    labels, n = ndimage.label(mask, structure=structure)
    labels = labels.astype(np.int32, copy=False)
    area = np.bincount(labels.reshape(-1), minlength=n + 1)[1:].astype(np.int64)
    if min_area > 1 and n:
        keep = area >= min_area
        remap = np.zeros(n + 1, dtype=np.int32)
        remap[1:][keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
        labels = remap[labels]
        area = area[keep]
        n = int(keep.sum())
    # the section of each region: any of its pixels' section index (a region lies in one section)
    section_of_pixel = np.broadcast_to(np.arange(mask.shape[0])[:, None, None], mask.shape).reshape(-1)
    flat = labels.reshape(-1)
    section = np.zeros(n + 1, dtype=np.int64)
    section[flat] = section_of_pixel
    majority = np.full(n, -1, dtype=np.int64)
    k = 0
    if masks_N_H_W is not None:
        if num_classes is None:
            raise ConfigError("connected_regions: pass num_classes together with masks_N_H_W")
        k = int(num_classes)
        true = _np(masks_N_H_W).reshape(-1)
        if true.shape != flat.shape:
            raise ConfigError(f"masks {_np(masks_N_H_W).shape} must have the mask's shape {mask.shape}")
        inside = flat > 0
        cls = np.where((true >= 0) & (true < k), true, k)  # out-of-range labels parked in bin k
        pairs = flat[inside].astype(np.int64) * (k + 1) + cls[inside]
        joint = np.bincount(pairs, minlength=(n + 1) * (k + 1))
        votes = joint.reshape(n + 1, k + 1)[1:, :k]
        majority = np.where(votes.sum(axis=1) > 0, votes.argmax(axis=1), -1).astype(np.int64)
    return RegionStats(labels, area, section[1:], majority, k)


def per_class_forgetting(
    forgetting_N_H_W: torch.Tensor | np.ndarray,
    masks_N_H_W: torch.Tensor | np.ndarray,
    num_classes: int,
    *,
    tau: int,
    ignore_index: int | None = None,
    never_learned_N_H_W: torch.Tensor | np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Forgetting by true class, over valid pixels.

    Returns:
        ``pixels``: int64 ``[K]``; float64 ``[K]`` (NaN for a class without pixels): ``mean_forgetting``,
        ``fraction_forgotten`` (forgotten at least once), ``fraction_frequent`` (at least ``tau`` times),
        and ``fraction_never_learned`` when ``never_learned_N_H_W`` is given.
    """
    counts = _np(forgetting_N_H_W)
    masks = _np(masks_N_H_W)
    _check_stack("forgetting", counts)
    _check_stack("masks", masks, counts.shape)
    k = int(num_classes)
    valid = (masks >= 0) & (masks < k)
    if ignore_index is not None:
        valid &= masks != ignore_index
    cls = np.where(valid, masks, k).reshape(-1).astype(np.int64)  # parked bin k for left-out pixels

    def class_sum(values: np.ndarray) -> np.ndarray:
        return np.bincount(cls, weights=values.reshape(-1).astype(np.float64), minlength=k + 1)[:k]

    pixels = np.bincount(cls, minlength=k + 1)[:k].astype(np.int64)
    den = np.where(pixels > 0, pixels, np.nan).astype(np.float64)
    out = {
        "pixels": pixels,
        "mean_forgetting": class_sum(counts) / den,
        "fraction_forgotten": class_sum(counts > 0) / den,
        "fraction_frequent": class_sum(counts >= tau) / den,
    }
    if never_learned_N_H_W is not None:
        never = _np(never_learned_N_H_W)
        _check_stack("never_learned", never, counts.shape)
        out["fraction_never_learned"] = class_sum(never.astype(bool)) / den
    return out


def boundary_distance(masks_N_H_W: torch.Tensor | np.ndarray, ignore_index: int | None = None) -> np.ndarray:
    """float32 ``[N, H, W]``: Euclidean distance in pixels to the nearest pixel of another class.

    A pixel touching another class along an edge has distance 1. Distances are measured within a section;
    ``ignore_index`` pixels are neither a class nor a boundary (they get NaN), and a section with a single
    class has no boundary (its pixels get ``inf``).
    """
    masks = _np(masks_N_H_W)
    _check_stack("masks", masks)
    ignored = masks == ignore_index if ignore_index is not None else np.zeros(masks.shape, dtype=bool)
    out = np.full(masks.shape, np.inf, dtype=np.float32)
    for n in range(masks.shape[0]):  # one edt per (section, present class): small 2-D calls
        section, skip = masks[n], ignored[n]
        classes = np.unique(section[~skip])
        if classes.size < 2:
            continue
        for c in classes:
            inside = section == c
            # distance to the nearest pixel that is neither class c nor ignored
            d = ndimage.distance_transform_edt(inside | skip)
            out[n][inside] = d[inside]
    out[ignored] = np.nan
    return out


@dataclass(frozen=True)
class TemporalGroups:
    """When valid pixels were forgotten, as one group id per pixel (see :func:`temporal_groups`).

    Attributes:
        group: int8 ``[N, H, W]`` id into :data:`TEMPORAL_GROUPS`, -1 for ignored / unobserved pixels.
        counts: int64 ``[5]`` pixels per group.
        early_until: last epoch counted as early.
        last_forgotten_hist: int64 ``[E + 1]`` pixels whose last forgetting event was at epoch ``e``.
        learned_hist: int64 ``[E + 1]`` pixels learned for good at epoch ``e``.
    """

    group: np.ndarray = field(repr=False)
    counts: np.ndarray
    early_until: int
    last_forgotten_hist: np.ndarray = field(repr=False)
    learned_hist: np.ndarray = field(repr=False)

    def fractions(self) -> dict[str, float]:
        """Share of each group among grouped pixels."""
        total = int(self.counts.sum())
        return {
            name: (float(c) / total if total else math.nan)
            for name, c in zip(TEMPORAL_GROUPS, self.counts, strict=True)
        }


def temporal_groups(
    forgetting_N_H_W: torch.Tensor | np.ndarray,
    last_forgotten_epoch_N_H_W: torch.Tensor | np.ndarray,
    learned_epoch_N_H_W: torch.Tensor | np.ndarray,
    never_learned_N_H_W: torch.Tensor | np.ndarray,
    *,
    epochs: int,
    early_fraction: float = 0.5,
    valid_N_H_W: np.ndarray | None = None,
) -> TemporalGroups:
    """Group valid pixels by when they were forgotten (EventTracker read-outs as inputs).

    Groups (a partition of the valid pixels):

    * ``never_forgotten``: learned and never forgotten;
    * ``early``: forgotten, correct at the last observation, last forgotten at an epoch
      ``<= early_until = ceil(early_fraction * epochs)``;
    * ``late``: forgotten, correct at the last observation, last forgotten after ``early_until``;
    * ``never_settled``: correct at some observation but wrong at the last one (``learned_epoch == -1``);
    * ``never_learned``: never correct.

    Args:
        forgetting_N_H_W: int counts; last_forgotten_epoch_N_H_W, learned_epoch_N_H_W: int epochs, -1 when
            undefined; never_learned_N_H_W: bool (the tracker read-outs of the same names).
        epochs: number of training epochs (for ``early_until`` and the histograms).
        early_fraction: share of the epochs that counts as early, in ``(0, 1)``.
        valid_N_H_W: bool pixels to group (default: all).
    """
    if not 0.0 < early_fraction < 1.0:
        raise ConfigError(f"early_fraction must be in (0, 1), got {early_fraction}")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ConfigError(f"epochs must be an integer >= 1, got {epochs!r}")
    forgetting = _np(forgetting_N_H_W)
    last = _np(last_forgotten_epoch_N_H_W).astype(np.int64)
    learned = _np(learned_epoch_N_H_W).astype(np.int64)
    never = _np(never_learned_N_H_W).astype(bool)
    _check_stack("forgetting", forgetting)
    for name, arr in (("last_forgotten_epoch", last), ("learned_epoch", learned), ("never_learned", never)):
        _check_stack(name, arr, forgetting.shape)
    valid = np.ones(forgetting.shape, bool) if valid_N_H_W is None else np.asarray(valid_N_H_W, bool)
    early_until = max(1, math.ceil(early_fraction * epochs))
    settled = learned >= 0
    group = np.full(forgetting.shape, -1, dtype=np.int8)
    # assignment order: later rules refine earlier ones; every valid pixel gets exactly one group
    group[valid & settled & (forgetting == 0)] = 0
    group[valid & settled & (forgetting > 0) & (last <= early_until)] = 1
    group[valid & settled & (forgetting > 0) & (last > early_until)] = 2
    group[valid & ~settled & ~never] = 3
    group[valid & never] = 4
    counts = np.bincount(group[group >= 0].reshape(-1), minlength=5).astype(np.int64)
    width = epochs + 1
    last_hist = np.bincount(np.clip(last[valid & (last >= 0)], 0, epochs), minlength=width)[:width]
    learned_hist = np.bincount(np.clip(learned[valid & settled], 0, epochs), minlength=width)[:width]
    return TemporalGroups(
        group, counts, early_until, last_hist.astype(np.int64), learned_hist.astype(np.int64)
    )


@dataclass(frozen=True)
class Correlation:
    """Spearman's rank correlation of two per-pixel quantities.

    Attributes:
        rho: the coefficient (NaN when undefined, e.g. a constant input).
        p_value: two-sided p-value of scipy's test (with n in the hundreds of thousands it is ~0 for any
            visible correlation; read rho).
        n: pixels used.
        n_total: finite valid pixels before subsampling.
    """

    rho: float
    p_value: float
    n: int
    n_total: int

    def to_dict(self) -> dict[str, float | int | None]:
        return {
            "rho": None if math.isnan(self.rho) else self.rho,
            "p_value": None if math.isnan(self.p_value) else self.p_value,
            "n": self.n,
            "n_total": self.n_total,
        }


def spearman(
    x: torch.Tensor | np.ndarray,
    y: torch.Tensor | np.ndarray,
    valid: np.ndarray | None = None,
    *,
    max_points: int | None = 200_000,
    seed: int = 0,
) -> Correlation:
    """Spearman's rho between ``x`` and ``y`` (same shape) over valid pixels where both are finite.

    Args:
        max_points: above this many pixels a seeded uniform subsample of that size is used (rank
            correlation on 200k pixels has a standard error below 0.003); ``None`` uses every pixel.
        seed: seed of the subsample.
    """
    a = _np(x).astype(np.float64).reshape(-1)
    b = _np(y).astype(np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ConfigError(f"spearman: x and y differ in shape: {_np(x).shape} and {_np(y).shape}")
    keep = np.isfinite(a) & np.isfinite(b)
    if valid is not None:
        keep &= np.asarray(valid, dtype=bool).reshape(-1)
    idx = np.flatnonzero(keep)
    n_total = int(idx.size)
    if max_points is not None and idx.size > max_points:
        idx = np.sort(np.random.default_rng(seed).choice(idx, size=max_points, replace=False))
    if idx.size < 3 or np.ptp(a[idx]) == 0 or np.ptp(b[idx]) == 0:
        return Correlation(math.nan, math.nan, int(idx.size), n_total)
    res = stats.spearmanr(a[idx], b[idx])
    return Correlation(float(res.statistic), float(res.pvalue), int(idx.size), n_total)


def spearman_by_class(
    x: torch.Tensor | np.ndarray,
    y: torch.Tensor | np.ndarray,
    masks_N_H_W: torch.Tensor | np.ndarray,
    num_classes: int,
    valid: np.ndarray | None = None,
    *,
    max_points: int | None = 200_000,
    seed: int = 0,
) -> list[Correlation]:
    """:func:`spearman` of ``x`` and ``y`` within each true class ``0..K-1`` (a list of K correlations)."""
    masks = _np(masks_N_H_W)
    keep = np.ones(masks.shape, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    return [
        spearman(x, y, keep & (masks == c), max_points=max_points, seed=seed) for c in range(int(num_classes))
    ]


def within_class_rho(correlations: list[Correlation]) -> float:
    """The mean of per-class rhos weighted by each class's pixel count (classes with an undefined rho are
    left out); NaN when none is defined."""
    pairs = [(c.rho, c.n_total) for c in correlations if not math.isnan(c.rho) and c.n_total > 0]
    if not pairs:
        return math.nan
    rho, weight = np.array(pairs, dtype=np.float64).T
    return float(np.sum(rho * weight) / np.sum(weight))
