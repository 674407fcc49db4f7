"""Active-learning strategies: a scorer plus a selector, declared inputs, a registry.

>>> strategy = get_strategy("gauss")
>>> strategy.requires  # what the loop must compute
frozenset({<Input.DYNAMICS: 'dynamics'>})

Modules: :mod:`~forgetting.strategies.base` (the contract), :mod:`~forgetting.strategies.selectors` (plain
seeded selectors usable without a model), :mod:`~forgetting.strategies.uncertainty`,
:mod:`~forgetting.strategies.bayesian`, :mod:`~forgetting.strategies.diversity`,
:mod:`~forgetting.strategies.dynamics` (FALSE, GauSS, precomputed ``scores_file``) and
:mod:`~forgetting.strategies.registry`.
"""

from __future__ import annotations

from forgetting.strategies.base import MODEL_INPUTS, Input, Selection, SelectionKind, Strategy, StrategyInputs
from forgetting.strategies.bayesian import BaldStrategy, BatchBaldStrategy, bald_scores, batchbald_select
from forgetting.strategies.diversity import BadgeStrategy, CoresetStrategy
from forgetting.strategies.dynamics import (
    CountStrategy,
    ForgettingStrategy,
    GaussStrategy,
    SampledCountStrategy,
    SampledSwitchStrategy,
    SwitchStrategy,
    load_scores_file,
)
from forgetting.strategies.registry import (
    STRATEGIES,
    get_strategy,
    list_strategies,
    register_strategy,
    strategy_options,
)
from forgetting.strategies.scored import ScoredStrategy
from forgetting.strategies.selectors import (
    GAUSS_FALLBACKS,
    GaussInfo,
    badge_select,
    badge_sq_distances,
    gauss_select,
    k_center_greedy,
    kmeans_pp_select,
    sample_without_replacement,
    sampled_count_select,
    sampled_switch_select,
    select_top_k,
    uniform_select,
)
from forgetting.strategies.uncertainty import (
    EntropyStrategy,
    LeastConfidenceStrategy,
    MarginStrategy,
    RandomStrategy,
    entropy_scores,
    least_confidence_scores,
    margin_scores,
)

__all__ = [
    "GAUSS_FALLBACKS",
    "MODEL_INPUTS",
    "STRATEGIES",
    "BadgeStrategy",
    "BaldStrategy",
    "BatchBaldStrategy",
    "CoresetStrategy",
    "CountStrategy",
    "EntropyStrategy",
    "ForgettingStrategy",
    "GaussInfo",
    "GaussStrategy",
    "Input",
    "LeastConfidenceStrategy",
    "MarginStrategy",
    "RandomStrategy",
    "SampledCountStrategy",
    "SampledSwitchStrategy",
    "ScoredStrategy",
    "Selection",
    "SelectionKind",
    "Strategy",
    "StrategyInputs",
    "SwitchStrategy",
    "badge_select",
    "badge_sq_distances",
    "bald_scores",
    "batchbald_select",
    "entropy_scores",
    "gauss_select",
    "get_strategy",
    "k_center_greedy",
    "kmeans_pp_select",
    "least_confidence_scores",
    "list_strategies",
    "load_scores_file",
    "margin_scores",
    "register_strategy",
    "sample_without_replacement",
    "sampled_count_select",
    "sampled_switch_select",
    "select_top_k",
    "strategy_options",
    "uniform_select",
]
