"""The analysis of forgetting maps: frequently forgotten regions, per-class rates, temporal groups and the
link of forgetting with the final margin and the distance to label boundaries. Pure functions over a pixel
tracker and the masks; the report (:mod:`forgetting.segmentation.report`) renders what they return."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from forgetting.events import EventTracker
from forgetting.exceptions import ConfigError, DatasetFormatError
from forgetting.segmentation.regions import (
    Correlation,
    RegionStats,
    TemporalGroups,
    boundary_distance,
    connected_regions,
    frequently_forgotten,
    per_class_forgetting,
    spearman,
    spearman_by_class,
    temporal_groups,
    within_class_rho,
)

__all__ = ["MapsAnalysis", "analyze_forgetting"]

logger = logging.getLogger(__name__)


@dataclass
class MapsAnalysis:
    """The forgetting maps of one set of sections and everything measured on them.

    Maps are numpy ``[N, H, W]``: ``forgetting``, ``switches`` (int32), ``learned_epoch``,
    ``last_forgotten_epoch`` (int64, -1 when undefined), ``never_learned``, ``valid``, ``frequent``
    (bool), ``masks`` (int64 true labels), ``distance`` (float32 distance to the nearest other class; NaN
    on ignored pixels, inf in a one-class section), ``margin`` (float32 final top-1 minus top-2 softmax
    probability, or None).

    Attributes:
        regions: connected components of ``frequent``.
        per_class: :func:`~forgetting.segmentation.regions.per_class_forgetting` plus ``regions`` and
            ``region_area`` (int64 ``[K]``, by majority class).
        temporal: when pixels were forgotten.
        margin_correlation: Spearman's rho of forgetting vs final margin over all valid pixels (None without
            margins).
        distance_correlation: Spearman's rho of forgetting vs distance to the nearest label boundary.
        margin_correlation_by_class, distance_correlation_by_class: the same within each true class (K
            entries). The pooled rho mixes classes that differ in both quantities; the within-class rho
            (:func:`~forgetting.segmentation.regions.within_class_rho`) does not.
    """

    class_names: tuple[str, ...]
    tau: int
    epochs: int
    forgetting: np.ndarray = field(repr=False)
    switches: np.ndarray = field(repr=False)
    learned_epoch: np.ndarray = field(repr=False)
    last_forgotten_epoch: np.ndarray = field(repr=False)
    never_learned: np.ndarray = field(repr=False)
    masks: np.ndarray = field(repr=False)
    valid: np.ndarray = field(repr=False)
    frequent: np.ndarray = field(repr=False)
    distance: np.ndarray = field(repr=False)
    margin: np.ndarray | None = field(repr=False)
    regions: RegionStats
    per_class: dict[str, np.ndarray] = field(repr=False)
    temporal: TemporalGroups
    margin_correlation: Correlation | None
    distance_correlation: Correlation
    margin_correlation_by_class: list[Correlation] | None = field(default=None, repr=False)
    distance_correlation_by_class: list[Correlation] = field(default_factory=list, repr=False)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def valid_pixels(self) -> int:
        return int(self.valid.sum())

    def summary(self) -> dict[str, Any]:
        """Every number, JSON-friendly (NaN as None)."""
        valid = self.valid_pixels
        forgotten = int((self.forgetting[self.valid] > 0).sum())
        per_class = {
            name: {key: _clean(values[i]) for key, values in self.per_class.items()}
            for i, name in enumerate(self.class_names)
        }
        return {
            "sections": int(self.forgetting.shape[0]),
            "valid_pixels": valid,
            "epochs": self.epochs,
            "tau": self.tau,
            "fraction_forgotten": forgotten / valid if valid else None,
            "fraction_frequent": int(self.frequent.sum()) / valid if valid else None,
            "fraction_never_learned": int(self.never_learned[self.valid].sum()) / valid if valid else None,
            "mean_forgetting": float(self.forgetting[self.valid].mean()) if valid else None,
            "mean_switches": float(self.switches[self.valid].mean()) if valid else None,
            "regions": {k: _clean(v) for k, v in self.regions.summary().items()},
            "per_class": per_class,
            "temporal": {
                "early_until_epoch": self.temporal.early_until,
                "pixels": dict(
                    zip(self.temporal.fractions(), (int(c) for c in self.temporal.counts), strict=True)
                ),
                "fractions": {k: _clean(v) for k, v in self.temporal.fractions().items()},
            },
            "correlation_forgetting_margin": self._correlation_summary(
                self.margin_correlation, self.margin_correlation_by_class
            ),
            "correlation_forgetting_distance": self._correlation_summary(
                self.distance_correlation, self.distance_correlation_by_class
            ),
        }

    def _correlation_summary(
        self, pooled: Correlation | None, by_class: list[Correlation] | None
    ) -> dict[str, Any] | None:
        if pooled is None:
            return None
        out: dict[str, Any] = pooled.to_dict()
        if by_class:
            out["within_class_rho"] = _clean(within_class_rho(by_class))
            out["by_class"] = {
                name: _clean(c.rho) for name, c in zip(self.class_names, by_class, strict=True)
            }
        return out

    def arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        """The maps in compact dtypes, for ``np.savez`` (keys prefixed by ``prefix``)."""
        out = {
            "forgetting": self.forgetting.astype(np.int16),
            "switches": self.switches.astype(np.int16),
            "learned_epoch": self.learned_epoch.astype(np.int16),
            "last_forgotten_epoch": self.last_forgotten_epoch.astype(np.int16),
            "never_learned": self.never_learned,
            "masks": self.masks.astype(np.int16),
            "frequent": self.frequent,
            "regions": self.regions.labels,
            "temporal_group": self.temporal.group,
            "boundary_distance": self.distance,
        }
        if self.margin is not None:
            out["margin"] = self.margin
        return {f"{prefix}{k}": v for k, v in out.items()}


def _clean(x: Any) -> Any:
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and math.isnan(x):
        return None
    return x


def analyze_forgetting(
    tracker: EventTracker,
    masks_N_H_W: torch.Tensor | np.ndarray,
    *,
    class_names: Sequence[str],
    ignore_index: int | None = None,
    margin_N_H_W: torch.Tensor | np.ndarray | None = None,
    epochs: int | None = None,
    tau: int = 2,
    connectivity: int = 2,
    min_region_area: int = 4,
    early_fraction: float = 0.5,
    max_correlation_points: int | None = 200_000,
    seed: int = 0,
) -> MapsAnalysis:
    """Analyse a per-pixel tracker: regions, per-class rates, temporal groups and correlations.

    Args:
        tracker: an :class:`EventTracker` of shape ``(N, H, W)`` fed with the sections' masks.
        masks_N_H_W: int64 true labels of the tracked sections.
        class_names: K names; labels must lie in ``0..K-1`` apart from ``ignore_index``.
        ignore_index: label value that is not a pixel to analyse.
        margin_N_H_W: optional float final softmax margins (:func:`~forgetting.segmentation.
            predict_segmentation`).
        epochs: epochs trained; default the largest epoch the tracker saw.
        tau: frequently forgotten = forgotten at least ``tau`` times.
        connectivity, min_region_area: see :func:`~forgetting.segmentation.regions.connected_regions`.
        early_fraction: see :func:`~forgetting.segmentation.regions.temporal_groups`.
        max_correlation_points, seed: the seeded subsample of the Spearman correlations.
    """
    if len(tracker.shape) != 3:
        raise ConfigError(f"analyze_forgetting needs a per-pixel tracker (N, H, W), got {tracker.shape}")
    masks = masks_N_H_W.cpu().numpy() if isinstance(masks_N_H_W, torch.Tensor) else np.asarray(masks_N_H_W)
    if masks.shape != tracker.shape:
        raise ConfigError(f"masks {masks.shape} must have the tracker's shape {tracker.shape}")
    k = len(class_names)
    valid = masks != ignore_index if ignore_index is not None else np.ones(masks.shape, dtype=bool)
    bad = valid & ((masks < 0) | (masks >= k))
    if bad.any():
        raise DatasetFormatError(
            f"mask values {np.unique(masks[bad])[:10].tolist()} are outside 0..{k - 1} and not the "
            f"ignore_index {ignore_index}; pass the dataset's class names or set ignore_index"
        )
    read = tracker.to_numpy(
        ["forgetting", "switches", "learned_epoch", "last_forgotten_epoch", "never_learned", "seen"]
    )
    valid &= read["seen"]
    epochs_seen = tracker.epochs_seen
    if epochs is None:
        epochs = max(epochs_seen) if epochs_seen else 1
    forgetting = read["forgetting"]
    frequent = frequently_forgotten(forgetting, tau, valid)
    regions = connected_regions(
        frequent, masks_N_H_W=masks, num_classes=k, connectivity=connectivity, min_area=min_region_area
    )
    per_class = per_class_forgetting(
        forgetting, masks, k, tau=tau, ignore_index=ignore_index, never_learned_N_H_W=read["never_learned"]
    )
    rc = regions.per_class()
    per_class["regions"] = rc["count"]
    per_class["region_area"] = rc["area"]
    temporal = temporal_groups(
        forgetting,
        read["last_forgotten_epoch"],
        read["learned_epoch"],
        read["never_learned"],
        epochs=int(epochs),
        early_fraction=early_fraction,
        valid_N_H_W=valid,
    )
    distance = boundary_distance(masks, ignore_index)
    margin = None
    margin_corr = None
    margin_by_class = None
    if margin_N_H_W is not None:
        margin = (
            margin_N_H_W.float().cpu().numpy()
            if isinstance(margin_N_H_W, torch.Tensor)
            else np.asarray(margin_N_H_W, dtype=np.float32)
        )
        if margin.shape != masks.shape:
            raise ConfigError(f"margins {margin.shape} must have the tracker's shape {masks.shape}")
        margin_corr = spearman(forgetting, margin, valid, max_points=max_correlation_points, seed=seed)
        margin_by_class = spearman_by_class(
            forgetting, margin, masks, k, valid, max_points=max_correlation_points, seed=seed
        )
    distance_corr = spearman(forgetting, distance, valid, max_points=max_correlation_points, seed=seed)
    distance_by_class = spearman_by_class(
        forgetting, distance, masks, k, valid, max_points=max_correlation_points, seed=seed
    )
    return MapsAnalysis(
        class_names=tuple(class_names),
        tau=int(tau),
        epochs=int(epochs),
        forgetting=forgetting,
        switches=read["switches"],
        learned_epoch=read["learned_epoch"],
        last_forgotten_epoch=read["last_forgotten_epoch"],
        never_learned=read["never_learned"],
        masks=masks,
        valid=valid,
        frequent=frequent,
        distance=distance,
        margin=margin,
        regions=regions,
        per_class=per_class,
        temporal=temporal,
        margin_correlation=margin_corr,
        distance_correlation=distance_corr,
        margin_correlation_by_class=margin_by_class,
        distance_correlation_by_class=distance_by_class,
    )
