"""Plain records that the training and active-learning layers return.

They hold numbers and small numpy arrays only, so the experiments layer can persist them (SQLite + npz)
and a Ray task can return them without pickling a model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class TrainRecord:
    """What one round's training did (:func:`forgetting.training.fit`, or a user's training function, which
    may give only ``epochs`` and ``steps``: the loop measures the seconds).

    Attributes:
        epochs: epochs run.
        steps: optimizer steps taken.
        seconds: wall time of the optimisation itself (observation passes excluded).
        track_seconds: wall time spent in observation callbacks.
        train_accuracy: the accuracy that the stopping rule saw last (running accuracy of the final epoch,
            or of an eval pass, as configured).
        reached_target: whether the target training accuracy was reached before ``max_epochs``.
    """

    epochs: int
    steps: int
    seconds: float = 0.0
    track_seconds: float = 0.0
    train_accuracy: float = float("nan")
    reached_target: bool | None = None


@dataclass
class RoundRecord:
    """One active-learning round, ready to persist.

    Attributes:
        round: 0-based round number. Round r trains on the labeled set *before* its query.
        n_labeled: labels the model of this round was trained on.
        train: the training record of the round.
        seconds: wall time per phase: ``train``, ``track``, ``query``, ``eval``.
        metrics: ``{eval_set: {metric: value}}``; eval sets are ``test``, a domain-shift set name such as
            ``digits``, or a corruption ``name-severity`` such as ``gaussian_noise-3``. Metrics are
            ``accuracy``, ``nll``, ``ece``.
        query_indices: int64 ``[n]`` indices into the training split of the samples queried this round
            (empty in the last round, which only evaluates).
        query_scores: float64 ``[n]`` the strategy's score of each queried sample (NaN where a strategy has
            no per-sample score, e.g. ``random``).
        dynamics: per pool sample arrays, keyed by name (``switches``, ``forgetting``...), aligned with
            ``pool_indices``. Empty when no dynamics were tracked.
        pool_indices: int64 ``[P]`` training-split indices of the pool tracked this round.
        query_arrays: per queried sample arrays, keyed by name and aligned with ``query_indices``. A
            segmentation round stores ``images`` (uint8 ``[n, C, H, W]``), ``masks`` (the revealed masks,
            int16 ``[n, H, W]``), ``pred`` (the round model's prediction, uint8 ``[n, H, W]``),
            ``pixel_scores`` (the strategy's per-pixel score, float16 ``[n, H, W]``; absent for ``random``)
            and ``switch_maps`` (switch counts per pixel, uint8 ``[n, H, W]``, when the pool was tracked).
            Empty for classification.
        strategy_arrays: what the strategy fitted to select this round's queries
            (:meth:`~forgetting.strategies.Strategy.fitted`; GauSS: its two-component mixture), empty for
            strategies that fit nothing.
        samples: the per-sample table of the tracked pool (:func:`forgetting.exports.sample_table`, one
            row per candidate, ``sample_id`` = its training-split index; a per-sample summary of the pixels
            for segmentation). Empty when the pool was not tracked.
    """

    round: int
    n_labeled: int
    train: TrainRecord
    seconds: dict[str, float]
    metrics: dict[str, dict[str, float]]
    query_indices: np.ndarray
    query_scores: np.ndarray
    dynamics: dict[str, np.ndarray] = field(default_factory=dict)
    pool_indices: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    query_arrays: dict[str, np.ndarray] = field(default_factory=dict)
    samples: dict[str, np.ndarray] = field(default_factory=dict)
    strategy_arrays: dict[str, np.ndarray] = field(default_factory=dict)
