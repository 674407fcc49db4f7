"""forgetting: learning dynamics for deep networks.

Counts how often a network forgets a sample (or a pixel) and how often its prediction switches while it
trains, and turns that signal into forgetting maps, forgetting-guided augmentation and active learning
(FALSE and GauSS).

The core API is importable from the top level::

    from forgetting import EventTracker, load_dataset, build_model, fit, run_active_learning

The experiments layer (configs, the results store, reports) is imported on first use, so that
``import forgetting`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from forgetting._version import __version__
from forgetting.callbacks import Callback, TrainingCallback
from forgetting.data import (
    CORRUPTIONS,
    Dataset,
    DatasetSource,
    DataSource,
    Split,
    TensorSource,
    build_eval_set,
    corrupt,
    dataset_report,
    list_datasets,
    load_dataset,
)
from forgetting.devices import resolve_device
from forgetting.evaluation import evaluate
from forgetting.events import EventTracker
from forgetting.exceptions import (
    ConfigError,
    DatasetFormatError,
    DatasetNotFoundError,
    DirectoryInUseError,
    DivergedError,
    ForgettingError,
    LabelConflictError,
    LabelImportError,
    MissingDependencyError,
    MissingInputError,
    PoolExhaustedError,
    ProjectError,
    StoreCorruptError,
    TrainingLimitError,
    UnknownNameError,
)
from forgetting.inference import predict
from forgetting.loop import LoopConfig, TrackConfig, initial_labeled_set, run_active_learning
from forgetting.models import build_model, list_models, mc_dropout, register_model
from forgetting.observe import ObservationCallback, Observer
from forgetting.records import RoundRecord, TrainRecord
from forgetting.strategies import (
    Input,
    Selection,
    Strategy,
    StrategyInputs,
    gauss_select,
    get_strategy,
    list_strategies,
    select_top_k,
)
from forgetting.summaries import count_histogram, dynamics_summary, per_class_rates
from forgetting.tasks import ClassificationTask, Task, get_task, register_task
from forgetting.training import LabeledSet, StoppingRule, TrainConfig, TrainFn, fit, fit_fn

if TYPE_CHECKING:
    from forgetting.annotate import LabelingProject, QueryResult, init_project
    from forgetting.experiments import load_config, run_experiments, write_report
    from forgetting.profile import DynamicsAccumulator, profile
    from forgetting.segmentation import (
        MapsConfig,
        SegmentationOptions,
        SegmentationTask,
        analyze_forgetting,
        fit_segmentation,
        load_maps_config,
        predict_segmentation,
        reduce_pixel_scores,
        run_forgetting_maps,
        segmentation_metrics,
    )

_LAZY = {"load_config", "run_experiments", "write_report"}
_LAZY_SEGMENTATION = {  # imports pydantic and scipy: on first use
    "MapsConfig",
    "SegmentationOptions",
    "SegmentationTask",
    "analyze_forgetting",
    "fit_segmentation",
    "load_maps_config",
    "predict_segmentation",
    "profile",
    "reduce_pixel_scores",
    "run_forgetting_maps",
    "segmentation_metrics",
}
_LAZY_ANNOTATE = {"LabelingProject", "QueryResult", "init_project"}  # imports pydantic: on first use
# `forgetting.profile` is a callable package (forgetting.profile(...) runs the pipeline); it imports the
# report and its config on first use.
_LAZY_PROFILE = {"profile", "DynamicsAccumulator"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from forgetting import experiments

        return getattr(experiments, name)
    if name in _LAZY_ANNOTATE:
        from forgetting import annotate

        return getattr(annotate, name)
    if name in _LAZY_PROFILE:
        import forgetting.profile as profile_package

        return profile_package if name == "profile" else getattr(profile_package, name)
    if name in _LAZY_SEGMENTATION:
        from forgetting import segmentation

        return getattr(segmentation, name)
    raise AttributeError(f"module 'forgetting' has no attribute {name!r}")


__all__ = [
    "CORRUPTIONS",
    "Callback",
    "ClassificationTask",
    "ConfigError",
    "DataSource",
    "Dataset",
    "DatasetFormatError",
    "DatasetNotFoundError",
    "DatasetSource",
    "DirectoryInUseError",
    "DivergedError",
    "DynamicsAccumulator",
    "EventTracker",
    "ForgettingError",
    "Input",
    "LabelConflictError",
    "LabelImportError",
    "LabeledSet",
    "LabelingProject",
    "LoopConfig",
    "MapsConfig",
    "MissingDependencyError",
    "MissingInputError",
    "ObservationCallback",
    "Observer",
    "PoolExhaustedError",
    "ProjectError",
    "QueryResult",
    "RoundRecord",
    "SegmentationOptions",
    "SegmentationTask",
    "Selection",
    "Split",
    "StoppingRule",
    "StoreCorruptError",
    "Strategy",
    "StrategyInputs",
    "Task",
    "TensorSource",
    "TrackConfig",
    "TrainConfig",
    "TrainFn",
    "TrainRecord",
    "TrainingCallback",
    "TrainingLimitError",
    "UnknownNameError",
    "__version__",
    "analyze_forgetting",
    "build_eval_set",
    "build_model",
    "corrupt",
    "count_histogram",
    "dataset_report",
    "dynamics_summary",
    "evaluate",
    "fit",
    "fit_fn",
    "fit_segmentation",
    "gauss_select",
    "get_strategy",
    "get_task",
    "init_project",
    "initial_labeled_set",
    "list_datasets",
    "list_models",
    "list_strategies",
    "load_config",
    "load_dataset",
    "load_maps_config",
    "mc_dropout",
    "per_class_rates",
    "predict",
    "predict_segmentation",
    "profile",
    "reduce_pixel_scores",
    "register_model",
    "register_task",
    "resolve_device",
    "run_active_learning",
    "run_experiments",
    "run_forgetting_maps",
    "segmentation_metrics",
    "select_top_k",
    "write_report",
]
