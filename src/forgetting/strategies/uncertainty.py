"""The random baseline and the softmax-uncertainty strategies (entropy, margin, least confidence).

Scorers are vectorised over the pool and run on the device of the probabilities; higher = more uncertain.
"""

from __future__ import annotations

import torch

from forgetting.exceptions import InputError, ShapeError
from forgetting.strategies.base import Input, Selection, StrategyInputs
from forgetting.strategies.common import check_n, check_rows
from forgetting.strategies.scored import ScoredStrategy
from forgetting.strategies.selectors import uniform_select

__all__ = [
    "EntropyStrategy",
    "LeastConfidenceStrategy",
    "MarginStrategy",
    "RandomStrategy",
    "entropy_scores",
    "least_confidence_scores",
    "margin_scores",
]


def _check_probs(probs_N_C: torch.Tensor) -> torch.Tensor:
    if probs_N_C.ndim != 2 or probs_N_C.shape[1] < 1:
        raise ShapeError(f"probabilities must be [N, C], got shape {tuple(probs_N_C.shape)}")
    return probs_N_C if probs_N_C.dtype == torch.float64 else probs_N_C.float()


def entropy_scores(probs_N_C: torch.Tensor) -> torch.Tensor:
    """Predictive entropy ``-Σ_c p_c log p_c`` (nats; ``0 log 0 = 0``): float ``[N]``."""
    p = _check_probs(probs_N_C)
    return -torch.special.xlogy(p, p).sum(dim=1)


def margin_scores(probs_N_C: torch.Tensor) -> torch.Tensor:
    """Negative margin ``-(p_(1) - p_(2))`` of the two largest probabilities: float ``[N]`` in ``[-1, 0]``.

    Higher = smaller margin = more uncertain. Needs ``C >= 2``.
    """
    p = _check_probs(probs_N_C)
    if p.shape[1] < 2:
        raise InputError(f"margin needs at least 2 classes, got probabilities of shape {tuple(p.shape)}")
    top2 = torch.topk(p, k=2, dim=1).values
    return top2[:, 1] - top2[:, 0]


def least_confidence_scores(probs_N_C: torch.Tensor) -> torch.Tensor:
    """``1 - max_c p_c``: float ``[N]``; higher = less confident."""
    p = _check_probs(probs_N_C)
    return 1.0 - p.max(dim=1).values


class RandomStrategy(ScoredStrategy):
    """``random``: ``n`` pool positions uniformly without replacement (seeded); no inputs, NaN scores."""

    name = "random"
    requires = frozenset()

    def score(self, inputs: StrategyInputs) -> torch.Tensor:
        """NaN ``[N]``: random selection has no per-sample score."""
        return torch.full((inputs.n_pool,), float("nan"), dtype=torch.float64)

    def select(self, inputs: StrategyInputs, n: int, *, seed: int) -> Selection:
        """Uniform sample without replacement of ``n`` of the ``inputs.n_pool`` positions."""
        n = check_n(n, inputs.n_pool)
        indices = uniform_select(inputs.n_pool, n, seed=seed)
        return Selection(indices=indices, scores=self.score(inputs).numpy()[indices])


class _ProbsStrategy(ScoredStrategy):
    requires = frozenset({Input.PROBS})
    elementwise = True  # one score per softmax row: applies to each pixel too

    @staticmethod
    def _probs(inputs: StrategyInputs) -> torch.Tensor:
        return check_rows(inputs.require("probs_N_C"), "probs_N_C", inputs.n_pool, ndim=2)


class EntropyStrategy(_ProbsStrategy):
    """``entropy``: top-k predictive entropy of the softmax (Shannon 1948; Settles 2009)."""

    name = "entropy"

    def score(self, inputs: StrategyInputs) -> torch.Tensor:
        """Predictive entropy ``[N]``."""
        return entropy_scores(self._probs(inputs))


class MarginStrategy(_ProbsStrategy):
    """``margin``: top-k of ``-(p_(1) - p_(2))`` (Scheffer et al. 2001): smallest margins first."""

    name = "margin"

    def score(self, inputs: StrategyInputs) -> torch.Tensor:
        """Negative top-2 margin ``[N]``."""
        return margin_scores(self._probs(inputs))


class LeastConfidenceStrategy(_ProbsStrategy):
    """``least-confidence``: top-k of ``1 - max p`` (Lewis & Gale 1994)."""

    name = "least-confidence"

    def score(self, inputs: StrategyInputs) -> torch.Tensor:
        """``1 - max p`` ``[N]``."""
        return least_confidence_scores(self._probs(inputs))
