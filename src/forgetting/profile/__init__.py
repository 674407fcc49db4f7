"""Explain a classifier sample by sample: forgettable examples, data maps, AUM, likely label errors, pruning.

``forgetting.profile(data, ...)`` (this package is callable: it runs :func:`~forgetting.profile.run.profile`)
trains one classifier while observing its training set and returns, per sample, the forgetting, learning
and switch counts, the first-learned and learned-for-good epochs, ``never_learned``, the cartography
confidence, variability and correctness, the area under the margin and the final loss; it flags likely
mislabelled samples with AUM threshold samples and can run Toneva et al.'s pruning experiment.

Modules, one idea each:

* :mod:`~forgetting.profile.dynamics`: :class:`DynamicsAccumulator`, the O(1)-per-sample running state;
* :mod:`~forgetting.profile.train`: one profiled training run (:func:`train_profiled`);
* :mod:`~forgetting.profile.mislabel`: the AUM threshold-sample flags (:func:`flag_mislabeled`);
* :mod:`~forgetting.profile.prune`: the pruning experiment (:func:`prune`);
* :mod:`~forgetting.profile.noise`: synthetic label noise (:func:`flip_labels`), for benchmarks;
* :mod:`~forgetting.profile.table`: the per-sample CSV / parquet table;
* :mod:`~forgetting.profile.result`: :class:`ProfileResult` and the per-sample table's columns;
* :mod:`~forgetting.profile.report`: the HTML report;
* :mod:`~forgetting.profile.config`: the TOML config of ``forgetting profile``;
* :mod:`~forgetting.profile.run`: the pipeline (:func:`profile`).
"""

from __future__ import annotations

import sys
import types
from typing import Any

from forgetting.profile.dynamics import DynamicsAccumulator, SampleDynamics, eval_observation, margins
from forgetting.profile.mislabel import MislabelFlags, MislabelSettings, flag_mislabeled
from forgetting.profile.noise import NOISE_KINDS, flip_labels, flip_map
from forgetting.profile.prune import PruneResult, prune, removal_order
from forgetting.profile.result import ProfileResult
from forgetting.profile.run import profile, resolve_data
from forgetting.profile.table import write_table
from forgetting.profile.train import (
    DEFAULT_TRAIN,
    OBSERVE_MODES,
    TrainedProfile,
    derived_seed,
    relabeled,
    train_profiled,
    with_rows,
)

__all__ = [
    "DEFAULT_TRAIN",
    "NOISE_KINDS",
    "OBSERVE_MODES",
    "DynamicsAccumulator",
    "MislabelFlags",
    "MislabelSettings",
    "ProfileResult",
    "PruneResult",
    "SampleDynamics",
    "TrainedProfile",
    "derived_seed",
    "eval_observation",
    "flag_mislabeled",
    "flip_labels",
    "flip_map",
    "margins",
    "profile",
    "prune",
    "relabeled",
    "removal_order",
    "resolve_data",
    "train_profiled",
    "with_rows",
    "write_table",
]


class _CallableModule(types.ModuleType):
    """This package, callable: ``forgetting.profile(...)`` is :func:`forgetting.profile.run.profile`.

    The package and the function share the name ``forgetting.profile``; once any submodule is imported,
    Python binds the package to that name on :mod:`forgetting`, so the package itself must be the function.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> ProfileResult:
        return profile(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
