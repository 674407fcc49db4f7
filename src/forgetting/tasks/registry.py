"""Task names -> task classes. Built-in tasks are named by import path, so that nothing here (and nothing in
the loop or the labelling projects) imports a task's package until a run needs it.

>>> get_task("classification", 10)
ClassificationTask(num_classes=10)
"""

from __future__ import annotations

import difflib
from typing import Any

from forgetting.exceptions import ConfigError, UnknownNameError
from forgetting.tasks.base import Task

__all__ = ["TASKS", "get_task", "list_tasks", "register_task", "task_name_for_targets"]

#: name -> task class, or the import path ``"module:Class"`` of one (imported on first use).
TASKS: dict[str, type[Task] | str] = {
    "classification": "forgetting.tasks.classification:ClassificationTask",
    "segmentation": "forgetting.segmentation.task:SegmentationTask",
}


def register_task(name: str, task: type[Task] | str, *, overwrite: bool = False) -> None:
    """Register a :class:`Task` subclass (or its import path ``"module:Class"``) under ``name``.

    Raises:
        ConfigError: the name is taken and ``overwrite`` is false, or ``task`` is not a Task subclass.
    """
    key = name.strip().lower()
    if not isinstance(task, str) and not (isinstance(task, type) and issubclass(task, Task)):
        raise ConfigError(f"register_task({name!r}) expects a Task subclass or 'module:Class', got {task!r}")
    if key in TASKS and TASKS[key] != task and not overwrite:
        raise ConfigError(f"task name {key!r} is already registered; pass overwrite=True to replace it")
    TASKS[key] = task


def list_tasks() -> list[str]:
    """The registered task names, sorted."""
    return sorted(TASKS)


def _resolve(name: str) -> type[Task]:
    key = name.strip().lower() if isinstance(name, str) else name
    if key not in TASKS:
        close = difflib.get_close_matches(str(key), TASKS, n=2)
        hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
        raise UnknownNameError(f"unknown task {name!r}{hint}; known tasks: {', '.join(list_tasks())}")
    entry = TASKS[key]
    if isinstance(entry, str):
        from forgetting.models.factory import import_object

        cls = import_object(entry, what="task")
        if not (isinstance(cls, type) and issubclass(cls, Task)):
            raise ConfigError(f"task {key!r}: {entry!r} is not a Task subclass")
        TASKS[key] = cls
        return cls
    return entry


def get_task(name: str, num_classes: int, **options: Any) -> Task:
    """Build the task registered as ``name`` for ``num_classes`` classes, with its ``options``
    (segmentation: ``ignore_index``, ``reduction``, ``top_q``, ``class_weights``, ``class_names``).

    Raises:
        UnknownNameError: no task of that name.
        ConfigError: an option the task does not take.
    """
    cls = _resolve(name)
    try:
        return cls(num_classes, **options)
    except TypeError as err:
        raise ConfigError(f"task {name!r}: bad options {sorted(options)}: {err}") from None


def task_name_for_targets(ndim: int) -> str:
    """The built-in task of targets with ``ndim`` dimensions per sample: 0 (a class id per sample) ->
    ``"classification"``, 2 (a mask per sample) -> ``"segmentation"``.

    Raises:
        ConfigError: any other shape; pass a task explicitly.
    """
    if ndim == 0:
        return "classification"
    if ndim == 2:
        return "segmentation"
    raise ConfigError(
        f"targets with {ndim} dimensions per sample match no built-in task; pass task=... explicitly"
    )
