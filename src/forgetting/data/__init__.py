"""Datasets, splits, format loaders and OOD corruptions.

Every dataset is tensors on the CPU: images ``uint8 [N, C, H, W]`` and labels ``int64 [N]`` (or masks
``int64 [N, H, W]``), with class names and named splits. Load one by name with :func:`load_dataset`; see
:func:`list_datasets` and :func:`dataset_report` for what is available here.
"""

from __future__ import annotations

from forgetting.data import builtin as _builtin  # noqa: F401  (registers the packaged datasets)
from forgetting.data import f3 as _f3  # noqa: F401  (registers f3)
from forgetting.data import seismic as _seismic  # noqa: F401  (registers seismic-synthetic)
from forgetting.data import user_formats as _user_formats  # noqa: F401  (registers the user formats)
from forgetting.data.corruptions import CORRUPTIONS, corrupt
from forgetting.data.dataset import Dataset, Split
from forgetting.data.eval_sets import EvalSetName, build_eval_set, parse_eval_set_name
from forgetting.data.registry import (
    DATASETS,
    DatasetSpec,
    DatasetStatus,
    dataset_report,
    list_datasets,
    load_dataset,
    register_dataset,
)
from forgetting.data.source import DatasetSource, DataSource, TensorSource
from forgetting.data.splits import stratified_split, stratified_subset

__all__ = [
    "CORRUPTIONS",
    "DATASETS",
    "DataSource",
    "Dataset",
    "DatasetSource",
    "DatasetSpec",
    "DatasetStatus",
    "EvalSetName",
    "Split",
    "TensorSource",
    "build_eval_set",
    "corrupt",
    "dataset_report",
    "list_datasets",
    "load_dataset",
    "parse_eval_set_name",
    "register_dataset",
    "stratified_split",
    "stratified_subset",
]
