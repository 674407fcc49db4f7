"""The task interface between the active-learning loop and a kind of data (see :mod:`.base`).

Built in: ``classification`` (:class:`~forgetting.tasks.classification.ClassificationTask`) and
``segmentation`` (:class:`forgetting.segmentation.task.SegmentationTask`, imported on first use).
"""

from __future__ import annotations

from forgetting.tasks.base import PoolContext, PoolInputs, Task
from forgetting.tasks.classification import ClassificationTask
from forgetting.tasks.registry import TASKS, get_task, list_tasks, register_task, task_name_for_targets

__all__ = [
    "TASKS",
    "ClassificationTask",
    "PoolContext",
    "PoolInputs",
    "Task",
    "get_task",
    "list_tasks",
    "register_task",
    "task_name_for_targets",
]
