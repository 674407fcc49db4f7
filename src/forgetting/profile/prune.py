"""Toneva et al.'s pruning experiment: remove the unforgettable samples, retrain, compare with random removal.

:func:`removal_order` ranks the training samples from the least to the most forgettable: never-forgotten
(unforgettable) samples first, then by forgetting count, never-learned samples last (Toneva et al. count
them as forgotten infinitely often); ties in a seeded random order. :func:`prune` removes the first
``round(F * N)`` of that order, retrains a fresh model (the same initialisation and training seed as the
profile's run) on the rest and measures test accuracy, then does the same after removing a seeded random
``round(F * N)`` samples. If ``F`` is larger than the share of unforgettable samples, the removal continues
into the least forgotten ones (logged).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from forgetting.data.source import DataSource
from forgetting.devices import resolve_device
from forgetting.observe import Observer
from forgetting.profile.dynamics import SampleDynamics
from forgetting.profile.train import build_net, train_function
from forgetting.training import LabeledSet, evaluate_accuracy, run_train_fn

__all__ = ["PruneResult", "prune", "removal_order"]

logger = logging.getLogger(__name__)


def removal_order(dynamics: SampleDynamics, *, seed: int) -> np.ndarray:
    """int64 ``[N]`` rows from the least to the most forgettable (see the module docstring)."""
    score = dynamics.forgetting_score()
    tie = np.random.default_rng([seed, 4]).random(score.shape[0])
    return np.lexsort((tie, score)).astype(np.int64)


@dataclass
class PruneResult:
    """One fraction of the pruning experiment.

    Attributes:
        fraction: the fraction F asked for.
        removed: samples removed in each arm (``round(F * N)``).
        unforgettable: samples never forgotten in the profile (the pool the forgetting arm removes first).
        forgetting_accuracy: test accuracy after removing the least forgettable samples.
        random_accuracy: test accuracy after removing random samples.
        full_accuracy: test accuracy of the profile's model trained on every sample.
        removed_forgetting, removed_random: int64 the rows removed by each arm.
        seconds: wall time of both retrainings.
    """

    fraction: float
    removed: int
    unforgettable: int
    forgetting_accuracy: float
    random_accuracy: float
    full_accuracy: float | None
    removed_forgetting: np.ndarray
    removed_random: np.ndarray
    seconds: float = 0.0


def _retrain(
    source: DataSource, keep: np.ndarray, test: DataSource, num_classes: int, seed: int, **kwargs: Any
) -> float:
    """Test accuracy of a fresh model (seeded like the profile's) trained on the rows ``keep``."""
    device = resolve_device(kwargs.get("device", "auto"))
    subset = source.subset(np.sort(keep))
    net = build_net(
        kwargs.get("model", "small-cnn"),
        source,
        num_classes,
        seed=seed,
        options=kwargs.get("model_options"),
        device=device,
    )
    train_fn = train_function(kwargs.get("train"), kwargs.get("train_fn"))
    run_train_fn(train_fn, net, LabeledSet(subset, num_classes, seed, device), Observer())
    return evaluate_accuracy(net, test)


def prune(
    dynamics: SampleDynamics,
    source: DataSource,
    test: DataSource,
    num_classes: int,
    fraction: float,
    *,
    seed: int = 0,
    full_accuracy: float | None = None,
    **train_kwargs: Any,
) -> PruneResult:
    """Remove ``fraction`` of the training set by forgetting and at random; retrain each; test accuracy.

    Args:
        dynamics: the profile's read-outs (its forgetting counts rank the samples).
        source: the training data of the profile (rows aligned with ``dynamics``).
        test: the test set.
        num_classes: K.
        fraction: F in ``(0, 1)``.
        seed: the retrained models' initialisation and training seed (the profile's), the tie-break and
            the random arm's draw.
        full_accuracy: the full-data test accuracy, reported alongside.
        **train_kwargs: ``model``, ``model_options``, ``train``, ``train_fn``, ``device`` (as the profile's).
    """
    start = time.perf_counter()
    n = len(source)
    m = round(fraction * n)
    order = removal_order(dynamics, seed=seed)
    unforgettable = int(dynamics.unforgettable.sum())
    if m > unforgettable:
        logger.info(
            "prune %.0f%%: %d samples to remove, %d unforgettable; removing the least forgotten next",
            100 * fraction,
            m,
            unforgettable,
        )
    by_forgetting = np.sort(order[:m])
    rng = np.random.default_rng([seed, 5, round(fraction * 1_000_000)])
    at_random = np.sort(rng.permutation(n)[:m]).astype(np.int64)
    everything = np.arange(n)
    acc_f = _retrain(source, np.setdiff1d(everything, by_forgetting), test, num_classes, seed, **train_kwargs)
    acc_r = _retrain(source, np.setdiff1d(everything, at_random), test, num_classes, seed, **train_kwargs)
    return PruneResult(
        fraction=float(fraction),
        removed=int(m),
        unforgettable=unforgettable,
        forgetting_accuracy=acc_f,
        random_accuracy=acc_r,
        full_accuracy=full_accuracy,
        removed_forgetting=by_forgetting,
        removed_random=at_random,
        seconds=time.perf_counter() - start,
    )
