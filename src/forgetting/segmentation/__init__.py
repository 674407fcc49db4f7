"""Forgetting maps for semantic segmentation: training with per-pixel tracking, metrics, region statistics,
the ``forgetting maps`` pipeline and its report.

Notebook use on your own model and data (masks int64 ``[N, H, W]``, images uint8 ``[N, C, H, W]``)::

    from forgetting.segmentation import fit_segmentation, predict_segmentation, analyze_forgetting
    fitted = fit_segmentation(model, train_split, num_classes=6, ignore_index=255)
    _, margin = predict_segmentation(model, train_split.images)
    maps = analyze_forgetting(fitted.trackers["train"].tracker, train_split.targets,
                              class_names=names, ignore_index=255, margin_N_H_W=margin, tau=2)
    maps.regions.count, maps.margin_correlation.rho, maps.per_class["fraction_frequent"]

or the whole pipeline: ``run_forgetting_maps(load_maps_config("maps.toml"), "runs/maps")``.

Active learning on sections (:mod:`forgetting.segmentation.active`): pass masks to
:func:`forgetting.run_active_learning` with ``task=SegmentationTask(K, reduction="top-q", ignore_index=255)``
(:mod:`forgetting.segmentation.task`; the default task of masks has default options);
:func:`reduce_pixel_scores` turns pixel scores into one score per section.

The report writer (:func:`write_maps_report`, :func:`plot_section_maps`) is imported on first use (it loads
matplotlib).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from forgetting.segmentation.active import (
    REDUCTIONS,
    PixelScoreReducer,
    SegmentationOptions,
    reduce_pixel_scores,
    segmentation_eval_metrics,
    segmentation_form,
    segmentation_strategies,
)
from forgetting.segmentation.maps import (
    MapsAnalysis,
    MapsConfig,
    MapsResult,
    analyze_forgetting,
    default_maps_config,
    load_maps_config,
    parse_maps_config,
    run_forgetting_maps,
)
from forgetting.segmentation.metrics import (
    ConfusionMatrix,
    SegmentationMetrics,
    confusion_matrix,
    segmentation_metrics,
)
from forgetting.segmentation.regions import (
    TEMPORAL_GROUPS,
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
    valid_mask,
    within_class_rho,
)
from forgetting.segmentation.task import SegmentationTask
from forgetting.segmentation.training import (
    CLASS_WEIGHTING,
    SegmentationFit,
    class_weights_from_masks,
    evaluate_segmentation,
    fit_segmentation,
    predict_segmentation,
    segmentation_train_config,
)

if TYPE_CHECKING:
    from forgetting.segmentation.report import (
        MapsReport,
        boundary_segments,
        pick_sections,
        plot_section_maps,
        write_maps_report,
    )

_LAZY = {"MapsReport", "boundary_segments", "pick_sections", "plot_section_maps", "write_maps_report"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from forgetting.segmentation import report

        return getattr(report, name)
    raise AttributeError(f"module 'forgetting.segmentation' has no attribute {name!r}")


__all__ = [
    "CLASS_WEIGHTING",
    "REDUCTIONS",
    "TEMPORAL_GROUPS",
    "ConfusionMatrix",
    "Correlation",
    "MapsAnalysis",
    "MapsConfig",
    "MapsReport",
    "MapsResult",
    "PixelScoreReducer",
    "RegionStats",
    "SegmentationFit",
    "SegmentationMetrics",
    "SegmentationOptions",
    "SegmentationTask",
    "TemporalGroups",
    "analyze_forgetting",
    "boundary_distance",
    "boundary_segments",
    "class_weights_from_masks",
    "confusion_matrix",
    "connected_regions",
    "default_maps_config",
    "evaluate_segmentation",
    "fit_segmentation",
    "frequently_forgotten",
    "load_maps_config",
    "parse_maps_config",
    "per_class_forgetting",
    "pick_sections",
    "plot_section_maps",
    "predict_segmentation",
    "reduce_pixel_scores",
    "run_forgetting_maps",
    "segmentation_eval_metrics",
    "segmentation_form",
    "segmentation_metrics",
    "segmentation_strategies",
    "segmentation_train_config",
    "spearman",
    "spearman_by_class",
    "temporal_groups",
    "valid_mask",
    "within_class_rho",
    "write_maps_report",
]
