"""Diversity strategies on embeddings: core-set (greedy k-center) and BADGE (k-means++ on gradient
embeddings).

Neither builds an ``N × N`` distance matrix nor the ``N × (C·D)`` gradient-embedding matrix; see
:func:`~forgetting.strategies.selectors.k_center_greedy` and
:func:`~forgetting.strategies.selectors.badge_select`.
"""

from __future__ import annotations

import torch

from forgetting.exceptions import ShapeError
from forgetting.strategies.base import Input, Selection, SelectionKind, StrategyInputs
from forgetting.strategies.common import check_n, check_rows, working_float
from forgetting.strategies.scored import ScoredStrategy
from forgetting.strategies.selectors import badge_factors, badge_select, k_center_greedy, min_distances

__all__ = ["BadgeStrategy", "CoresetStrategy"]


def _embeddings(inputs: StrategyInputs) -> torch.Tensor:
    return check_rows(inputs.require("embeddings_N_D"), "embeddings_N_D", inputs.n_pool, ndim=2)


def _labeled_embeddings(inputs: StrategyInputs, dim: int) -> torch.Tensor:
    labeled = inputs.require("labeled_embeddings_L_D")
    if labeled.ndim != 2 or (labeled.shape[0] > 0 and labeled.shape[1] != dim):
        raise ShapeError(
            f"labeled_embeddings_L_D must be [L, {dim}] like embeddings_N_D (L may be 0), "
            f"got shape {tuple(labeled.shape)}"
        )
    return labeled


class CoresetStrategy(ScoredStrategy):
    """``coreset`` (Sener & Savarese 2018): greedy k-center on penultimate embeddings vs the labeled set.

    Each pick is the pool point farthest (Euclidean) from the labeled set and the points picked before it.
    With an empty labeled set (``labeled_embeddings_L_D`` of shape ``[0, D]``) the first point is drawn
    uniformly at random (seeded); otherwise the selection is deterministic. ``score`` is the distance of each
    pool point to its nearest labeled point (``inf`` when the labeled set is empty); ``select`` returns each
    pick's distance to its nearest centre when picked (NaN for a random first pick).
    """

    name = "coreset"
    requires = frozenset({Input.EMBEDDINGS})
    selection = SelectionKind.JOINT  # greedy k-center over the embeddings

    def score(self, inputs: StrategyInputs) -> torch.Tensor:
        """Distance to the nearest labeled embedding, ``[N]``, computed in bounded blocks."""
        pool = working_float(_embeddings(inputs))
        labeled = _labeled_embeddings(inputs, pool.shape[1])
        if labeled.shape[0] == 0:
            return torch.full((pool.shape[0],), float("inf"), dtype=pool.dtype, device=pool.device)
        return min_distances(pool, labeled.to(device=pool.device, dtype=pool.dtype))

    def select(self, inputs: StrategyInputs, n: int, *, seed: int) -> Selection:
        """Greedy k-center selection of ``n`` pool positions."""
        n = check_n(n, inputs.n_pool)
        pool = _embeddings(inputs)
        labeled = _labeled_embeddings(inputs, pool.shape[1])
        indices, scores = k_center_greedy(pool, n, seed=seed, centers_L_D=labeled, return_scores=True)
        return Selection(indices=indices, scores=scores)


class BadgeStrategy(ScoredStrategy):
    """``badge`` (Ash et al. 2020): k-means++ seeding on gradient embeddings ``(onehot(ŷ) - p) ⊗ h``.

    First centre: the largest gradient norm (as in the authors' code); then D² sampling, seeded. ``score`` is
    the gradient-embedding norm ``||onehot(ŷ) - p|| · ||h||``; ``select`` returns each pick's gradient-space
    distance to its nearest earlier pick (the norm for the first).
    """

    name = "badge"
    requires = frozenset({Input.PROBS, Input.EMBEDDINGS})
    selection = SelectionKind.JOINT  # k-means++ seeding on gradient embeddings

    @staticmethod
    def _probs(inputs: StrategyInputs) -> torch.Tensor:
        return check_rows(inputs.require("probs_N_C"), "probs_N_C", inputs.n_pool, ndim=2)

    def score(self, inputs: StrategyInputs) -> torch.Tensor:
        """Gradient-embedding norm ``[N]``."""
        a, h = badge_factors(self._probs(inputs), _embeddings(inputs))
        return torch.linalg.vector_norm(a, dim=1) * torch.linalg.vector_norm(h, dim=1)

    def select(self, inputs: StrategyInputs, n: int, *, seed: int) -> Selection:
        """BADGE selection of ``n`` pool positions."""
        n = check_n(n, inputs.n_pool)
        indices, scores = badge_select(
            self._probs(inputs), _embeddings(inputs), n, seed=seed, return_scores=True
        )
        return Selection(indices=indices, scores=scores)
