"""The data of one experiment: its training split, eval sets and task, cached per data settings.

Shared by the runner (every backend's workers call :func:`prepare_data` through
:func:`~forgetting.experiments.experiment.run_spec`) and the pre-flight checks, which load each dataset once
before anything is written.
"""

from __future__ import annotations

import json
import logging
import zlib
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch

from forgetting.data.dataset import Split
from forgetting.experiments.config import ExperimentSpec

__all__ = ["PreparedData", "build_task", "clear_data_cache", "prepare_data"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreparedData:
    """The tensors one experiment runs on.

    Attributes:
        train: the training split (the pool and the oracle), ``uint8 [N, C, H, W]`` / ``int64 [N]`` (masks
            ``int64 [N, H, W]`` for segmentation).
        eval_sets: eval-set name -> split.
        num_classes: C.
        task: ``"classification"`` or ``"segmentation"``.
        class_names: the dataset's class names.
        ignore_index: the dataset's mask value that counts nothing (segmentation), or ``None``.
    """

    train: Split
    eval_sets: dict[str, Split]
    num_classes: int
    task: str = "classification"
    class_names: tuple[str, ...] = ()
    ignore_index: int | None = None


_DATASET_CACHE: dict[tuple[Any, ...], Any] = {}


_SPLIT_CACHE: dict[tuple[Any, ...], Split] = {}


def _seeded_subset(split: Split, limit: int | None, seed: int, purpose: str) -> Split:
    """A seeded random subset of ``limit`` elements (sorted indices), or ``split`` itself if it is smaller."""
    if limit is None or len(split) <= limit:
        return split
    rng = np.random.default_rng([seed, zlib.crc32(purpose.encode())])
    idx = np.sort(rng.choice(len(split), size=limit, replace=False)).astype(np.int64)
    return split.subset(torch.from_numpy(idx))


def prepare_data(spec: ExperimentSpec) -> PreparedData:
    """Load the dataset and build the eval sets of ``spec``, cached per (dataset, data settings) in-process.

    ``test`` is the dataset's test split; any other eval set comes from
    :func:`forgetting.data.build_eval_set` (a corruption of the test split, a domain-shift dataset, or
    ``split:<name>``, another split of the dataset).
    ``data.train_limit`` / ``data.eval_limit`` cut seeded random subsets (seeded by ``data.seed``).
    """
    from forgetting.data import build_eval_set, load_dataset

    d = spec.data
    key = (spec.dataset, d.root, d.seed, json.dumps(d.options, sort_keys=True))
    dataset = _DATASET_CACHE.get(key)
    if dataset is None:
        dataset = load_dataset(spec.dataset, root=d.root, seed=d.seed, **d.options)
        _DATASET_CACHE[key] = dataset
    train_key = (*key, "train", d.train_limit)
    if train_key not in _SPLIT_CACHE:
        _SPLIT_CACHE[train_key] = _seeded_subset(dataset.train, d.train_limit, d.seed, "train")
    test_key = (*key, "test", d.eval_limit)
    if test_key not in _SPLIT_CACHE:
        _SPLIT_CACHE[test_key] = _seeded_subset(dataset.test, d.eval_limit, d.seed, "test")
    test = _SPLIT_CACHE[test_key]
    eval_sets: dict[str, Split] = {}
    for name in spec.eval_sets:
        eval_key = (*key, "eval", d.eval_limit, name)
        if eval_key not in _SPLIT_CACHE:
            split = (
                test
                if name == "test"
                else build_eval_set(
                    name, test, seed=d.seed, root=d.root, classes=dataset.classes, dataset=dataset
                )
            )
            _SPLIT_CACHE[eval_key] = _seeded_subset(split, d.eval_limit, d.seed, f"eval:{name}")
        eval_sets[name] = _SPLIT_CACHE[eval_key]
    ignore = dataset.meta.get("ignore_index") if dataset.task == "segmentation" else None
    return PreparedData(
        train=_SPLIT_CACHE[train_key],
        eval_sets=eval_sets,
        num_classes=dataset.num_classes,
        task=dataset.task,
        class_names=tuple(dataset.classes),
        ignore_index=None if ignore is None else int(cast("int | str", ignore)),
    )


def clear_data_cache() -> None:
    """Forget the datasets and eval sets cached by :func:`prepare_data`."""
    _DATASET_CACHE.clear()
    _SPLIT_CACHE.clear()


def build_task(spec: ExperimentSpec, data: PreparedData) -> Any:
    """The :class:`~forgetting.tasks.base.Task` of ``spec`` on ``data``: the dataset's task, with the
    ``[segmentation]`` section's options when the dataset is a segmentation dataset."""
    from forgetting.tasks import get_task

    options: dict[str, Any] = {}
    if data.task == "segmentation":
        options = spec.task_options(dataset_ignore_index=data.ignore_index)
    elif spec.segmentation is not None:
        logger.warning(
            "experiment %s: dataset %r is a %s dataset; the [segmentation] settings do not apply to it",
            spec.label,
            spec.dataset,
            data.task,
        )
    names = data.class_names or None
    return get_task(data.task, data.num_classes, class_names=names, **options)
