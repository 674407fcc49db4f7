"""Experiments: config files, grids of experiments, the results store, runners and reports.

Data flows one way: config -> :func:`expand_grid` -> :func:`run_experiments` (which calls
``forgetting.loop.run_active_learning`` and writes each round to a :class:`ResultStore`) ->
:func:`write_report`.
"""

from __future__ import annotations

from forgetting.experiments.config import (
    SWEEP_FIELDS,
    ExperimentConfig,
    ExperimentSpec,
    RaySettings,
    expand_grid,
    load_config,
    parse_config,
    quickstart_config,
)
from forgetting.experiments.report import write_report
from forgetting.experiments.runner import RunSummary, estimate, run_experiments
from forgetting.experiments.store import DuplicateRoundError, ResultStore

__all__ = [
    "SWEEP_FIELDS",
    "DuplicateRoundError",
    "ExperimentConfig",
    "ExperimentSpec",
    "RaySettings",
    "ResultStore",
    "RunSummary",
    "estimate",
    "expand_grid",
    "load_config",
    "parse_config",
    "quickstart_config",
    "run_experiments",
    "write_report",
]
