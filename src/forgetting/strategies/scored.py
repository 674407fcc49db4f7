"""The scorer + selector base class shared by the built-in strategies."""

from __future__ import annotations

from abc import abstractmethod

import numpy as np
import torch

from forgetting.exceptions import InputError
from forgetting.strategies.base import Selection, SelectionKind, Strategy, StrategyInputs
from forgetting.strategies.common import as_numpy_1d, check_n
from forgetting.strategies.selectors import select_top_k

__all__ = ["ScoredStrategy"]


class ScoredStrategy(Strategy):
    """A strategy made of a scorer and a selector (score -> rank -> pick), the shape of every built-in one.

    Subclasses implement :meth:`score`; the default :meth:`select` takes the top-``n`` scores with a seeded
    random tie-break. Strategies whose selector is not a top-k (sampling, greedy) override :meth:`select`.
    ``options`` holds the constructor's keyword arguments (for logs and persisted configs).
    """

    options: dict[str, object]
    selection = SelectionKind.SCORES

    def __init__(self) -> None:
        self.options = {}

    @abstractmethod
    def score(self, inputs: StrategyInputs) -> torch.Tensor:
        """One float score per pool position, higher = more worth labelling: ``[N]`` (NaN = no score)."""

    def sample_scores(self, inputs: StrategyInputs) -> np.ndarray:
        """The per-sample scores :meth:`select` ranks: ``inputs.scores_N`` when a task computed them (for
        segmentation, this strategy's pixel scores reduced per section), else :meth:`score`. Host float64
        ``[N]`` (one transfer)."""
        raw = self.score(inputs) if inputs.scores_N is None else inputs.scores_N
        scores = as_numpy_1d(raw, f"{self.name} scores")
        if scores.size != inputs.n_pool:
            raise InputError(f"{self.name} produced {scores.size} scores for a pool of {inputs.n_pool}")
        return scores

    def select(self, inputs: StrategyInputs, n: int, *, seed: int) -> Selection:
        """Top-``n`` of :meth:`sample_scores`, ties broken uniformly at random by ``seed``."""
        n = check_n(n, inputs.n_pool)
        scores = self.sample_scores(inputs)
        indices = select_top_k(scores, n, seed=seed)
        return Selection(indices=indices, scores=scores[indices])

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"{type(self).__name__}({opts})"
