"""The contract every active-learning strategy must meet (scikit-activeml style template).

A strategy's test class inherits :class:`StrategyContract` (or :class:`EquivariantContract` for
deterministic, tie-free strategies), sets ``strategy_name`` (and ``options``, ``is_random`` where they
differ from the defaults) and may override the
``strategy`` or ``make_inputs`` fixtures. The inputs given to a strategy hold ONLY the fields its
``requires`` declares, exactly as the loop computes them, so a strategy that reads an undeclared input fails.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import pytest
import torch

from forgetting.exceptions import ConfigError, MissingInputError, PoolExhaustedError
from forgetting.strategies import Input, Selection, Strategy, StrategyInputs, get_strategy, list_strategies

#: The StrategyInputs fields each declared input fills.
FIELDS_BY_INPUT: dict[Input, tuple[str, ...]] = {
    Input.PROBS: ("probs_N_C",),
    Input.MC_PROBS: ("mc_probs_K_N_C",),
    Input.EMBEDDINGS: ("embeddings_N_D", "labeled_embeddings_L_D"),
    Input.DYNAMICS: ("switches_N",),
    Input.POOL_LABELS: ("pool_labels_N", "forgetting_N", "never_learned_N"),
    Input.POOL_INDICES: ("pool_indices_N",),
}
#: Fields aligned with the pool, and the dimension that indexes pool rows.
POOL_ROW_DIM: dict[str, int] = {
    "probs_N_C": 0,
    "mc_probs_K_N_C": 1,
    "embeddings_N_D": 0,
    "switches_N": 0,
    "forgetting_N": 0,
    "never_learned_N": 0,
    "pool_labels_N": 0,
    "pool_indices_N": 0,
}

InputsFactory = Callable[..., StrategyInputs]


def make_full_inputs(
    n_pool: int,
    *,
    seed: int = 0,
    n_classes: int = 4,
    n_passes: int = 6,
    dim: int = 8,
    n_labeled: int = 5,
) -> StrategyInputs:
    """Random inputs of every kind for a pool of ``n_pool`` (continuous probabilities and embeddings, coarse
    integer counts with many ties, as real switch counts have)."""
    g = torch.Generator().manual_seed(seed)
    logits = 2.0 * torch.randn(n_passes, n_pool, n_classes, generator=g)
    mc = torch.softmax(logits, dim=-1)
    labels = torch.randint(0, n_classes, (n_pool,), generator=g)
    return StrategyInputs(
        n_pool=n_pool,
        probs_N_C=mc.mean(dim=0),
        mc_probs_K_N_C=mc,
        embeddings_N_D=torch.randn(n_pool, dim, generator=g),
        labeled_embeddings_L_D=torch.randn(n_labeled, dim, generator=g),
        switches_N=torch.randint(0, 6, (n_pool,), generator=g).to(torch.int16),
        forgetting_N=torch.randint(0, 4, (n_pool,), generator=g).to(torch.uint8),
        never_learned_N=torch.rand(n_pool, generator=g) < 0.15,
        pool_labels_N=labels,
        pool_indices_N=torch.randperm(4 * n_pool, generator=g)[:n_pool],
    )


def only_declared(inputs: StrategyInputs, requires: frozenset[Input]) -> StrategyInputs:
    """A copy of ``inputs`` with every field not declared by ``requires`` set to ``None``."""
    keep = {f for i in requires for f in FIELDS_BY_INPUT[i]}
    fields = {f: getattr(inputs, f) for f in POOL_ROW_DIM | {"labeled_embeddings_L_D": 0}}
    return StrategyInputs(n_pool=inputs.n_pool, **{f: (v if f in keep else None) for f, v in fields.items()})


def subset_inputs(inputs: StrategyInputs, rows: np.ndarray) -> StrategyInputs:
    """The inputs of the pool positions ``rows`` only (what the loop passes once other rows are labeled)."""
    index = torch.as_tensor(rows, dtype=torch.long)
    changes: dict[str, Any] = {"n_pool": len(rows)}
    for name, dim in POOL_ROW_DIM.items():
        value = getattr(inputs, name)
        if value is not None:
            changes[name] = value.index_select(dim, index)
    return dataclasses.replace(inputs, **changes)


def _clone_tensors(inputs: StrategyInputs) -> dict[str, torch.Tensor]:
    return {
        f.name: getattr(inputs, f.name).clone()
        for f in dataclasses.fields(inputs)
        if isinstance(getattr(inputs, f.name), torch.Tensor)
    }


class StrategyContract:
    """Template: the tests every strategy must pass."""

    strategy_name: ClassVar[str]
    options: ClassVar[dict[str, Any]] = {}
    #: different seeds can give different selections (False: the selection must not depend on the seed)
    is_random: ClassVar[bool] = True
    #: declared inputs whose fields the strategy reads (None: all of ``requires``); an input may be declared
    #: only so that the loop computes another one (``forgetting`` declares DYNAMICS so the pool is tracked)
    inputs_read: ClassVar[frozenset[Input] | None] = None
    n_pool: ClassVar[int] = 60
    n_query: ClassVar[int] = 7

    @pytest.fixture
    def strategy(self) -> Strategy:
        return get_strategy(self.strategy_name, **self.options)

    @pytest.fixture
    def make_inputs(self, strategy: Strategy) -> InputsFactory:
        def build(n_pool: int, seed: int = 0) -> StrategyInputs:
            return only_declared(make_full_inputs(n_pool, seed=seed), strategy.requires)

        return build

    # ------------------------------------------------------------------ identity and declared inputs

    def test_is_registered_under_its_name(self, strategy: Strategy) -> None:
        assert strategy.name == self.strategy_name
        assert self.strategy_name in list_strategies()

    def test_requires_are_inputs(self, strategy: Strategy) -> None:
        assert isinstance(strategy.requires, frozenset)
        assert all(isinstance(i, Input) for i in strategy.requires)

    # ------------------------------------------------------------------ output types and shapes

    def test_returns_selection_of_right_types(self, strategy: Strategy, make_inputs: InputsFactory) -> None:
        sel = strategy.select(make_inputs(self.n_pool), self.n_query, seed=0)
        assert isinstance(sel, Selection)
        assert isinstance(sel.indices, np.ndarray) and sel.indices.dtype == np.int64
        assert isinstance(sel.scores, np.ndarray) and sel.scores.dtype == np.float64
        assert sel.indices.shape == (self.n_query,)
        assert sel.scores.shape == (self.n_query,)

    def test_indices_unique_and_in_range(self, strategy: Strategy, make_inputs: InputsFactory) -> None:
        for seed in range(3):
            sel = strategy.select(make_inputs(self.n_pool, seed=seed), self.n_query, seed=seed)
            assert len(np.unique(sel.indices)) == self.n_query
            assert sel.indices.min() >= 0 and sel.indices.max() < self.n_pool

    def test_score_is_one_float_per_pool_position(
        self, strategy: Strategy, make_inputs: InputsFactory
    ) -> None:
        score = getattr(strategy, "score", None)
        assert score is not None, "every built-in strategy exposes score(inputs)"
        scores = score(make_inputs(self.n_pool))
        assert isinstance(scores, torch.Tensor) and scores.shape == (self.n_pool,)
        assert scores.is_floating_point()

    def test_whole_pool_is_a_permutation(self, strategy: Strategy, make_inputs: InputsFactory) -> None:
        n_pool = 12
        sel = strategy.select(make_inputs(n_pool), n_pool, seed=3)
        assert sorted(sel.indices.tolist()) == list(range(n_pool))

    def test_single_sample_pool(self, strategy: Strategy, make_inputs: InputsFactory) -> None:
        sel = strategy.select(make_inputs(1), 1, seed=0)
        assert sel.indices.tolist() == [0]

    # ------------------------------------------------------------------ errors

    def test_more_than_pool_raises_pool_exhausted(
        self, strategy: Strategy, make_inputs: InputsFactory
    ) -> None:
        with pytest.raises(PoolExhaustedError, match=str(self.n_pool)):
            strategy.select(make_inputs(self.n_pool), self.n_pool + 1, seed=0)

    @pytest.mark.parametrize("bad_n", [0, -3, 2.5, True])
    def test_bad_query_size_raises_config_error(
        self, strategy: Strategy, make_inputs: InputsFactory, bad_n: object
    ) -> None:
        with pytest.raises(ConfigError, match="query size n"):
            strategy.select(make_inputs(self.n_pool), bad_n, seed=0)  # type: ignore[arg-type]

    def test_missing_declared_input_raises(self, strategy: Strategy, make_inputs: InputsFactory) -> None:
        inputs = make_inputs(self.n_pool)
        read = strategy.requires if self.inputs_read is None else self.inputs_read
        assert read <= strategy.requires
        for declared in read:
            stripped = dataclasses.replace(inputs, **dict.fromkeys(FIELDS_BY_INPUT[declared]))
            with pytest.raises(MissingInputError, match="not computed"):
                strategy.select(stripped, self.n_query, seed=0)

    # ------------------------------------------------------------------ seeds

    def test_same_seed_same_selection(self, strategy: Strategy, make_inputs: InputsFactory) -> None:
        inputs = make_inputs(self.n_pool)
        a = strategy.select(inputs, self.n_query, seed=11)
        b = strategy.select(inputs, self.n_query, seed=11)
        np.testing.assert_array_equal(a.indices, b.indices)
        np.testing.assert_array_equal(a.scores, b.scores)

    def test_seed_dependence(self, strategy: Strategy, make_inputs: InputsFactory) -> None:
        inputs = make_inputs(self.n_pool)
        picks = {tuple(strategy.select(inputs, self.n_query, seed=s).indices) for s in range(6)}
        if self.is_random:
            assert len(picks) > 1, "different seeds should give different selections"
        else:
            assert len(picks) == 1, "a deterministic strategy must not depend on the seed"

    # ------------------------------------------------------------------ positions into the pool

    def test_selects_positions_into_the_given_pool(
        self, strategy: Strategy, make_inputs: InputsFactory
    ) -> None:
        full = make_inputs(self.n_pool)
        remaining = np.arange(self.n_pool)[self.n_pool // 3 :]  # earlier rows were labeled and removed
        sub = subset_inputs(full, remaining)
        sel = strategy.select(sub, self.n_query, seed=0)
        assert sel.indices.max() < len(remaining)
        training_indices = remaining[sel.indices]
        assert np.all(training_indices >= self.n_pool // 3)

    def test_inputs_are_not_modified(self, strategy: Strategy, make_inputs: InputsFactory) -> None:
        inputs = make_inputs(self.n_pool)
        before = _clone_tensors(inputs)
        strategy.select(inputs, self.n_query, seed=0)
        for name, tensor in before.items():
            assert torch.equal(getattr(inputs, name), tensor), f"{name} was modified in place"


class EquivariantContract(StrategyContract):
    """Extra contract for deterministic, tie-free strategies: permuting the pool permutes the selection."""

    is_random = False

    def test_permutation_equivariance(self, strategy: Strategy, make_inputs: InputsFactory) -> None:
        inputs = make_inputs(self.n_pool)
        perm = np.random.default_rng(5).permutation(self.n_pool)
        base = strategy.select(inputs, self.n_query, seed=0)
        permuted = strategy.select(subset_inputs(inputs, perm), self.n_query, seed=0)
        np.testing.assert_array_equal(perm[permuted.indices], base.indices)
        np.testing.assert_allclose(permuted.scores, base.scores, rtol=1e-6, atol=1e-9)
