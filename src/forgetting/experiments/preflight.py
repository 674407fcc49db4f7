"""Checks that run before a run directory is touched: what would make experiments fail at run time.

:func:`preflight` is called by :func:`forgetting.experiments.run_experiments` before it creates the results
store, so a config that cannot run exits at once (``forgetting run`` exits 2) and writes nothing: a device
that is not there, data that cannot be loaded (a missing ``data.root``, an eval set whose dataset is not
installed, ``split:<name>`` of a split the dataset does not have), an ``al.initial_size`` larger than the
training split, a model of the wrong task for the dataset, or a strategy without a segmentation form on a
segmentation dataset.

It loads each distinct dataset once, through the runner's in-process cache
(:func:`forgetting.experiments.prepared.prepare_data`), so the ``local`` backend pays nothing extra.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

from forgetting.exceptions import ConfigError, ForgettingError
from forgetting.experiments.config import ExperimentSpec

__all__ = ["preflight"]

logger = logging.getLogger(__name__)


def _bullets(lines: Sequence[str]) -> str:
    return "".join(f"\n  - {line}" for line in lines)


def preflight(specs: Sequence[ExperimentSpec], *, check_local: bool = True) -> list[str]:
    """Check ``specs`` before anything is written.

    Args:
        specs: the experiments to run.
        check_local: also check the devices and the data on this machine (``False`` for a remote Ray
            cluster, whose nodes may have GPUs and data that this machine lacks).

    Returns:
        Warnings (already logged): experiments whose pool runs out before their last round.

    Raises:
        ConfigError: every problem found, one line each, naming the experiment and the key to change.
    """
    from forgetting.devices import resolve_device
    from forgetting.experiments.prepared import PreparedData, build_task, prepare_data
    from forgetting.models import is_import_path, model_info
    from forgetting.strategies import get_strategy

    problems: list[str] = []
    warnings: list[str] = []
    if not check_local:
        return warnings
    for device in sorted({s.device for s in specs if s.device is not None}):
        try:
            resolve_device(device)
        except ConfigError as exc:
            problems.append(str(exc))
    seen: dict[str, PreparedData | None] = {}  # data key -> the prepared data, None when broken
    for spec in specs:
        key = json.dumps(
            [spec.dataset, spec.data.model_dump(mode="json"), list(spec.eval_sets)], sort_keys=True
        )
        if key not in seen:
            try:
                data = prepare_data(spec)
            except ForgettingError as exc:
                seen[key] = None
                problems.append(f"dataset {spec.dataset!r} (eval sets {', '.join(spec.eval_sets)}): {exc}")
            else:
                seen[key] = data
        found = seen[key]
        if found is None:
            continue
        n_train, task = len(found.train), found.task
        limit = f" (data.train_limit = {spec.data.train_limit})" if spec.data.train_limit is not None else ""
        where = f"experiment {spec.id} ({spec.label})"
        if spec.al.initial_size > n_train:
            problems.append(
                f"{where}: al.initial_size = {spec.al.initial_size} is larger than the {n_train} training "
                f"samples of {spec.dataset!r}{limit}; lower al.initial_size or raise data.train_limit"
            )
            continue
        model_task = None if is_import_path(spec.model) else model_info(spec.model).get("task")
        if model_task is not None and model_task != task:
            problems.append(
                f"{where}: model {spec.model!r} is a {model_task} model but {spec.dataset!r} is a {task} "
                "dataset; pick a model of that task (see `forgetting models`)"
            )
        try:  # the dataset's task must have a form of the strategy (segmentation: no BADGE, ...)
            build_task(spec, found).check_strategy(get_strategy(spec.strategy, **spec.strategy_options))
        except ConfigError as exc:
            problems.append(f"{where}: {exc}")
        needed = spec.al.initial_size + spec.al.rounds * spec.al.query_size
        if needed > n_train:
            last = (n_train - spec.al.initial_size) // spec.al.query_size
            what = (
                "it will fail (al.on_exhausted = 'error')"
                if spec.al.on_exhausted == "error"
                else f"it ends early, after about {last + 1} of {spec.total_rounds} rounds "
                "(al.on_exhausted = 'partial')"
            )
            warnings.append(
                f"{where}: al.initial_size + al.rounds x al.query_size = {needed} labels, but "
                f"{spec.dataset!r} has {n_train} training samples{limit}, so the pool runs out: {what}; "
                f"lower al.rounds to {last} to run every round"
            )
    if problems:
        raise ConfigError(
            f"the config cannot run ({len(problems)} problem{'s' if len(problems) != 1 else ''}); nothing "
            "was written:" + _bullets(problems)
        )
    for warning in warnings:
        logger.warning("%s", warning)
    return warnings
