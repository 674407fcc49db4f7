"""Every strategy against the contract, plus each one's own checks against hand or brute-force results."""

from __future__ import annotations

import dataclasses
import math
import pickle
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch

from forgetting.exceptions import ConfigError, MissingInputError, UnknownNameError
from forgetting.strategies import (
    STRATEGIES,
    BadgeStrategy,
    GaussInfo,
    Input,
    Selection,
    Strategy,
    StrategyInputs,
    badge_select,
    badge_sq_distances,
    bald_scores,
    batchbald_select,
    get_strategy,
    k_center_greedy,
    kmeans_pp_select,
    list_strategies,
    register_strategy,
    strategy_options,
)
from strategy_contract import (
    EquivariantContract,
    InputsFactory,
    StrategyContract,
    make_full_inputs,
    only_declared,
)

# ====================================================================================== contract classes


class TestRandom(StrategyContract):
    strategy_name = "random"

    def test_scores_are_nan(self, strategy: Strategy) -> None:
        sel = strategy.select(StrategyInputs(n_pool=50), 5, seed=0)
        assert np.isnan(sel.scores).all()

    def test_roughly_uniform(self, strategy: Strategy) -> None:
        hits = np.zeros(10)
        for seed in range(600):
            hits[strategy.select(StrategyInputs(n_pool=10), 1, seed=seed).indices] += 1
        assert hits.min() > 30 and hits.max() < 95  # expected 60 each


class TestEntropy(EquivariantContract):
    strategy_name = "entropy"

    def test_picks_the_uniform_rows(self, strategy: Strategy) -> None:
        g = torch.Generator().manual_seed(0)
        probs = torch.softmax(6.0 * torch.randn(40, 5, generator=g), dim=1)
        uniform_rows = [3, 17, 31]
        probs[uniform_rows] = 0.2
        sel = strategy.select(StrategyInputs(n_pool=40, probs_N_C=probs), 3, seed=0)
        assert sorted(sel.indices.tolist()) == uniform_rows
        np.testing.assert_allclose(sel.scores, math.log(5), rtol=1e-6)

    def test_zero_probabilities_give_finite_entropy(self, strategy: Strategy) -> None:
        probs = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
        scores = strategy.score(StrategyInputs(n_pool=2, probs_N_C=probs))
        torch.testing.assert_close(scores, torch.tensor([0.0, math.log(2)]))


class TestMargin(EquivariantContract):
    strategy_name = "margin"

    def test_smallest_margin_first(self, strategy: Strategy) -> None:
        probs = torch.tensor([[0.9, 0.05, 0.05], [0.45, 0.44, 0.11], [0.6, 0.3, 0.1], [0.34, 0.33, 0.33]])
        sel = strategy.select(StrategyInputs(n_pool=4, probs_N_C=probs), 4, seed=0)
        assert sel.indices.tolist() == [3, 1, 2, 0]
        np.testing.assert_allclose(sel.scores, [-0.01, -0.01, -0.3, -0.85], atol=1e-6)


class TestLeastConfidence(EquivariantContract):
    strategy_name = "least-confidence"

    def test_scores_are_one_minus_max(self, strategy: Strategy) -> None:
        probs = torch.tensor([[0.9, 0.1], [0.55, 0.45], [0.7, 0.3]])
        sel = strategy.select(StrategyInputs(n_pool=3, probs_N_C=probs), 2, seed=0)
        assert sel.indices.tolist() == [1, 2]
        np.testing.assert_allclose(sel.scores, [0.45, 0.3], atol=1e-6)


class TestBald(EquivariantContract):
    strategy_name = "bald"

    def test_equals_hand_computation(self) -> None:
        # row 0: passes disagree (0.9/0.1 vs 0.1/0.9); row 1: passes agree on 0.5/0.5
        mc = torch.tensor([[[0.9, 0.1], [0.5, 0.5]], [[0.1, 0.9], [0.5, 0.5]]])
        h_pass = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1))
        expected = torch.tensor([math.log(2) - h_pass, 0.0], dtype=torch.float64)
        torch.testing.assert_close(bald_scores(mc), expected, atol=1e-7, rtol=0)
        torch.testing.assert_close(bald_scores(mc, chunk_size=1), expected, atol=1e-7, rtol=0)

    def test_chunking_does_not_change_scores(self) -> None:
        mc = make_full_inputs(37).mc_probs_K_N_C
        assert mc is not None
        torch.testing.assert_close(bald_scores(mc, chunk_size=5), bald_scores(mc))


class TestBatchBald(EquivariantContract):
    strategy_name = "batchbald"
    n_query = 5  # 4**4 = 256 configurations <= num_samples: exact enumeration, no sampling, no ties


class TestBatchBaldSampled(StrategyContract):
    """Small ``num_samples`` forces the sampled-configuration regime from the second pick on."""

    strategy_name = "batchbald"
    options: ClassVar[dict[str, Any]] = {"num_samples": 5, "max_candidates": 20, "chunk_size": 3}
    is_random = True


class TestCoreset(EquivariantContract):  # a non-empty labeled set makes it deterministic
    strategy_name = "coreset"


class TestCoresetEmptyLabeledSet(StrategyContract):
    strategy_name = "coreset"
    is_random = True  # the first centre is a seeded random point

    @pytest.fixture
    def make_inputs(self, strategy: Strategy) -> InputsFactory:
        def build(n_pool: int, seed: int = 0) -> StrategyInputs:
            inputs = only_declared(make_full_inputs(n_pool, seed=seed), strategy.requires)
            return dataclasses.replace(inputs, labeled_embeddings_L_D=torch.zeros(0, 8))

        return build


class TestBadge(StrategyContract):
    strategy_name = "badge"
    is_random = True


class TestForgetting(StrategyContract):
    strategy_name = "forgetting"
    inputs_read = frozenset({Input.POOL_LABELS})  # DYNAMICS is declared so that the pool gets tracked

    def test_never_learned_ranked_most_forgettable(self, strategy: Strategy) -> None:
        forgetting = torch.tensor([5, 0, 2, 7, 1, 0], dtype=torch.uint8)
        never = torch.tensor([False, True, False, False, False, True])
        inputs = StrategyInputs(n_pool=6, forgetting_N=forgetting, never_learned_N=never)
        for seed in range(5):
            sel = strategy.select(inputs, 3, seed=seed)
            assert set(sel.indices[:2].tolist()) == {1, 5}
            assert sel.indices[2] == 3
            np.testing.assert_array_equal(sel.scores, [8.0, 8.0, 7.0])  # max learned count + 1

    def test_all_never_learned(self, strategy: Strategy) -> None:
        inputs = StrategyInputs(
            n_pool=4,
            forgetting_N=torch.zeros(4, dtype=torch.int16),
            never_learned_N=torch.ones(4, dtype=torch.bool),
        )
        sel = strategy.select(inputs, 2, seed=0)
        assert np.isfinite(sel.scores).all()

    def test_never_learned_is_required(self, strategy: Strategy) -> None:
        inputs = StrategyInputs(n_pool=3, forgetting_N=torch.zeros(3, dtype=torch.int16))
        with pytest.raises(MissingInputError, match="never_learned_N"):
            strategy.select(inputs, 1, seed=0)


class TestSwitch(StrategyContract):
    strategy_name = "switch"

    def test_top_counts_always_taken_and_ties_random(self, strategy: Strategy) -> None:
        counts = torch.tensor([9, 1, 4, 4, 4, 4, 0, 8])
        inputs = StrategyInputs(n_pool=8, switches_N=counts)
        picks = set()
        for seed in range(20):
            sel = strategy.select(inputs, 4, seed=seed)
            assert sel.indices[:2].tolist() == [0, 7]
            assert set(sel.indices[2:].tolist()) <= {2, 3, 4, 5}
            np.testing.assert_array_equal(sel.scores, [9, 8, 4, 4])
            picks.add(frozenset(sel.indices[2:].tolist()))
        assert len(picks) > 3


class TestSwitchEntropyTieBreak(EquivariantContract):  # continuous entropies leave no ties
    strategy_name = "switch"
    options: ClassVar[dict[str, Any]] = {"tie_break": "entropy"}

    def test_requires_probs_too(self, strategy: Strategy) -> None:
        assert strategy.requires == {Input.DYNAMICS, Input.PROBS}

    def test_ties_go_to_the_highest_entropy(self, strategy: Strategy) -> None:
        counts = torch.tensor([3, 3, 3, 3, 5, 0])
        probs = torch.tensor([[0.9, 0.1], [0.5, 0.5], [0.8, 0.2], [0.6, 0.4], [1.0, 0.0], [0.5, 0.5]])
        inputs = StrategyInputs(n_pool=6, switches_N=counts, probs_N_C=probs)
        for seed in range(5):
            assert strategy.select(inputs, 3, seed=seed).indices.tolist() == [4, 1, 3]


class TestGauss(StrategyContract):
    strategy_name = "gauss"

    def test_samples_inside_the_high_component(self, strategy: Strategy) -> None:
        rng = np.random.default_rng(0)
        counts = np.concatenate([rng.poisson(1.0, 300), rng.poisson(12.0, 100)])
        inputs = StrategyInputs(n_pool=400, switches_N=torch.from_numpy(counts))
        sel = strategy.select(inputs, 20, seed=1)
        assert isinstance(strategy.last_info, GaussInfo)  # type: ignore[attr-defined]
        assert strategy.last_info.fallback is None  # type: ignore[attr-defined]
        assert (sel.indices >= 300).all()
        np.testing.assert_array_equal(sel.scores, counts[sel.indices])


class TestSampledSwitch(StrategyContract):
    strategy_name = "sampled-switch"

    def test_argmax_then_one_per_distinct_value_then_top_counts(self, strategy: Strategy) -> None:
        counts = torch.tensor([0, 5, 2, 5, 0, 2, 1, 3, 3, 0])
        for seed in range(20):
            sel = strategy.select(StrategyInputs(n_pool=10, switches_N=counts), 7, seed=seed)
            assert sel.scores[0] == 5  # the argmax (one of the two 5s)
            assert sorted(sel.scores[:4].tolist()) == [1, 2, 3, 5]  # every positive value once
            assert sorted(sel.scores[4:].tolist()) == [2, 3, 5]  # then the top of the rest
            np.testing.assert_array_equal(sel.scores, counts.numpy()[sel.indices])

    def test_negative_counts_rejected(self, strategy: Strategy) -> None:
        with pytest.raises(ValueError, match="non-negative"):
            strategy.select(StrategyInputs(n_pool=3, switches_N=torch.tensor([1.0, -1.0, 2.0])), 1, seed=0)


class TestSampledCount(StrategyContract):
    strategy_name = "sampled-count"

    def test_probability_proportional_to_squared_count(self, strategy: Strategy) -> None:
        inputs = StrategyInputs(n_pool=4, switches_N=torch.tensor([1, 2, 3, 0]))
        hits = np.zeros(4)
        for seed in range(1400):
            hits[strategy.select(inputs, 1, seed=seed).indices] += 1
        assert hits[3] == 0
        np.testing.assert_allclose(hits[:3] / hits.sum(), np.array([1, 4, 9]) / 14, atol=0.035)

    def test_zero_counts_only_after_every_positive(self, strategy: Strategy) -> None:
        counts = torch.tensor([0, 2, 0, 1, 0, 0])
        sel = strategy.select(StrategyInputs(n_pool=6, switches_N=counts), 4, seed=2)
        assert set(sel.indices[:2].tolist()) == {1, 3}

    def test_negative_counts_rejected(self, strategy: Strategy) -> None:
        with pytest.raises(ValueError, match="non-negative"):
            strategy.select(StrategyInputs(n_pool=3, switches_N=torch.tensor([1.0, -1.0, 2.0])), 1, seed=0)


# ---------------------------------------------------------------------------- precomputed counts


TRAIN_SIZE = 200


class PrecomputedContract(StrategyContract):
    """Count strategies fed from ``scores_file``: the loop gives ``pool_indices_N``; the strategy looks its
    counts up in the file."""

    file_suffix: ClassVar[str] = ".npy"

    @pytest.fixture
    def strategy(self, tmp_path: Path) -> Strategy:
        scores = np.random.default_rng(0).integers(0, 7, TRAIN_SIZE).astype(np.float64)
        path = tmp_path / f"scores{self.file_suffix}"
        if self.file_suffix == ".npy":
            np.save(path, scores)
        else:
            np.savez(path, scores=scores)
        return get_strategy(self.strategy_name, scores_file=str(path), **self.options)

    @pytest.fixture
    def make_inputs(self, strategy: Strategy) -> InputsFactory:
        def build(n_pool: int, seed: int = 0) -> StrategyInputs:
            pool_indices = np.random.default_rng(seed).choice(TRAIN_SIZE, n_pool, replace=False)
            inputs = only_declared(make_full_inputs(n_pool, seed=seed), strategy.requires)
            return dataclasses.replace(inputs, pool_indices_N=torch.from_numpy(pool_indices))

        return build

    def test_declares_pool_indices_looked_up_in_the_file(self, strategy: Strategy) -> None:
        assert strategy.uses_precomputed  # type: ignore[attr-defined]
        # no DYNAMICS (no tracking) and no POOL_LABELS (the oracle needs no labels here)
        assert strategy.requires == {Input.POOL_INDICES}
        assert not strategy.elementwise  # per-sample scores: no per-pixel form

    def test_reads_pool_indices_field(self, strategy: Strategy) -> None:
        with pytest.raises(MissingInputError, match="pool_indices_N"):
            strategy.select(StrategyInputs(n_pool=10), 2, seed=0)

    def test_precomputed_scores_follow_training_indices(self, strategy: Strategy, tmp_path: Path) -> None:
        scores = strategy.precomputed_scores(np.array([5, 0, 199]))  # type: ignore[attr-defined]
        assert scores.dtype == torch.float64 and scores.shape == (3,)
        with pytest.raises(ConfigError, match=f"holds {TRAIN_SIZE} scores"):
            strategy.precomputed_scores(np.array([3, TRAIN_SIZE]))  # type: ignore[attr-defined]


class TestSwitchPrecomputed(PrecomputedContract):
    strategy_name = "switch"


class TestGaussPrecomputedNpz(PrecomputedContract):
    strategy_name = "gauss"
    file_suffix = ".npz"


class TestSampledSwitchPrecomputed(PrecomputedContract):
    strategy_name = "sampled-switch"


class TestSampledCountPrecomputed(PrecomputedContract):
    strategy_name = "sampled-count"


class TestForgettingPrecomputed(PrecomputedContract):
    strategy_name = "forgetting"

    def test_inf_marks_never_learned(self, tmp_path: Path) -> None:
        path = tmp_path / "f.npy"
        np.save(path, np.array([1.0, np.inf, 4.0, 0.0]))
        strategy = get_strategy("forgetting", scores_file=path)
        inputs = StrategyInputs(n_pool=3, pool_indices_N=torch.tensor([0, 1, 2]))
        sel = strategy.select(inputs, 2, seed=0)
        assert sel.indices.tolist() == [1, 2]
        np.testing.assert_array_equal(sel.scores, [5.0, 4.0])


class TestScoresFileErrors:
    def test_missing_file(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match=r"scores_file.*no such file"):
            get_strategy("gauss", scores_file=tmp_path / "nope.npy")

    def test_wrong_suffix(self, tmp_path: Path) -> None:
        path = tmp_path / "s.csv"
        path.write_text("1,2,3")
        with pytest.raises(ConfigError, match=r"'\.npy', '\.npz'"):
            get_strategy("switch", scores_file=path)

    def test_npz_without_key(self, tmp_path: Path) -> None:
        path = tmp_path / "s.npz"
        np.savez(path, counts=np.arange(3))
        with pytest.raises(ConfigError, match="keys found: \\['counts'\\]"):
            get_strategy("switch", scores_file=path)

    @pytest.mark.parametrize("bad", [np.zeros((3, 2)), np.array(["a", "b"]), np.array([1.0, np.nan])])
    def test_bad_arrays(self, tmp_path: Path, bad: np.ndarray) -> None:
        path = tmp_path / "s.npy"
        np.save(path, bad)
        with pytest.raises(ConfigError, match="scores_file"):
            get_strategy("sampled-switch", scores_file=path)

    def test_inf_only_allowed_for_forgetting(self, tmp_path: Path) -> None:
        path = tmp_path / "s.npy"
        np.save(path, np.array([1.0, np.inf]))
        with pytest.raises(ConfigError, match="infinite"):
            get_strategy("switch", scores_file=path)
        assert get_strategy("forgetting", scores_file=path).uses_precomputed  # type: ignore[attr-defined]

    def test_precomputed_scores_without_file(self) -> None:
        with pytest.raises(ConfigError, match="without option 'scores_file'"):
            get_strategy("switch").precomputed_scores(np.arange(3))  # type: ignore[attr-defined]


# ====================================================================================== brute-force checks


def _brute_k_center(x: np.ndarray, centers: np.ndarray, n: int) -> list[int]:
    chosen: list[int] = []
    for _ in range(n):
        all_centers = np.concatenate([centers, x[chosen]]) if chosen else centers
        dist = np.linalg.norm(x[:, None, :] - all_centers[None, :, :], axis=-1).min(axis=1)
        dist[chosen] = -np.inf
        chosen.append(int(np.argmax(dist)))
    return chosen


def test_coreset_equals_brute_force_k_center() -> None:
    rng = np.random.default_rng(0)
    x, labeled = rng.normal(size=(80, 6)), rng.normal(size=(9, 6))
    expected = _brute_k_center(x, labeled, 12)
    got, dist = k_center_greedy(
        torch.from_numpy(x), 12, seed=0, centers_L_D=torch.from_numpy(labeled), return_scores=True
    )
    assert got.tolist() == expected
    first = np.linalg.norm(x[expected[0]] - labeled, axis=1).min()
    assert dist[0] == pytest.approx(first)
    assert np.all(np.diff(dist) <= 1e-12)  # farthest-first radii never grow

    strategy = get_strategy("coreset")
    inputs = StrategyInputs(
        n_pool=80,
        embeddings_N_D=torch.from_numpy(x).float(),
        labeled_embeddings_L_D=torch.from_numpy(labeled).float(),
    )
    assert strategy.select(inputs, 12, seed=0).indices.tolist() == expected


def test_coreset_empty_labeled_set_starts_at_a_seeded_point() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 4))
    got, dist = k_center_greedy(torch.from_numpy(x), 6, seed=3, return_scores=True)
    assert np.isnan(dist[0])
    assert got.tolist() == [int(got[0]), *_brute_k_center(x, x[[got[0]]], 5)]
    assert {int(k_center_greedy(torch.from_numpy(x), 1, seed=s)[0]) for s in range(8)}.__len__() > 1


def test_coreset_score_is_distance_to_nearest_labeled() -> None:
    inputs = make_full_inputs(30)
    assert inputs.embeddings_N_D is not None and inputs.labeled_embeddings_L_D is not None
    expected = torch.cdist(inputs.embeddings_N_D, inputs.labeled_embeddings_L_D).min(dim=1).values
    torch.testing.assert_close(get_strategy("coreset").score(inputs), expected, rtol=1e-5, atol=1e-5)


def test_k_center_never_repeats_on_duplicates() -> None:
    x = torch.ones(10, 3)
    got = k_center_greedy(x, 10, seed=0, centers_L_D=torch.ones(2, 3))
    assert sorted(got.tolist()) == list(range(10))


def _explicit_gradient_embeddings(probs: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
    a = torch.nn.functional.one_hot(probs.argmax(dim=1), probs.shape[1]).to(probs.dtype) - probs
    return (a[:, :, None] * emb[:, None, :]).reshape(len(probs), -1)  # N × (C·D), small case only


def test_badge_distances_equal_explicit_gradient_embeddings() -> None:
    inputs = make_full_inputs(25, n_classes=3, dim=5)
    probs, emb = inputs.probs_N_C.double(), inputs.embeddings_N_D.double()  # type: ignore[union-attr]
    g = _explicit_gradient_embeddings(probs, emb)
    for j in (0, 7, 24):
        explicit = ((g - g[j]) ** 2).sum(dim=1)
        torch.testing.assert_close(badge_sq_distances(probs, emb, j), explicit, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(
        BadgeStrategy().score(StrategyInputs(n_pool=25, probs_N_C=probs, embeddings_N_D=emb)), g.norm(dim=1)
    )


def test_badge_equals_kmeans_pp_on_explicit_gradient_embeddings() -> None:
    inputs = make_full_inputs(40, n_classes=4, dim=6)
    probs, emb = inputs.probs_N_C.double(), inputs.embeddings_N_D.double()  # type: ignore[union-attr]
    g = _explicit_gradient_embeddings(probs, emb)
    for seed in range(3):
        got, got_scores = badge_select(probs, emb, 10, seed=seed, return_scores=True)
        ref, ref_scores = kmeans_pp_select(g, 10, seed=seed, first="max-norm", return_scores=True)
        assert got.tolist() == ref.tolist()
        np.testing.assert_allclose(got_scores, ref_scores, rtol=1e-7)
        assert got[0] == int(g.norm(dim=1).argmax())


def test_kmeans_pp_covers_separated_clusters() -> None:
    # three tight clusters far apart: D² sampling takes one point from each, whatever the seed
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[10.0, 0.0], [0.0, 10.0], [-10.0, -10.0]])
    x = (centres[:, None, :] + 0.01 * torch.randn(3, 20, 2, generator=g)).reshape(60, 2)
    for seed in range(5):
        for first in ("random", "max-norm"):
            got = kmeans_pp_select(x, 3, seed=seed, first=first)  # type: ignore[arg-type]
            assert sorted((got // 20).tolist()) == [0, 1, 2]


def test_kmeans_pp_all_duplicates_falls_back_to_uniform() -> None:
    got = kmeans_pp_select(torch.ones(8, 3), 8, seed=0)
    assert sorted(got.tolist()) == list(range(8))


def test_kmeans_pp_rejects_unknown_first() -> None:
    with pytest.raises(ConfigError, match="max-norm"):
        kmeans_pp_select(torch.ones(3, 2), 1, seed=0, first="median")  # type: ignore[arg-type]


def _brute_joint_mi(mc: np.ndarray, batch: list[int]) -> float:
    """Exact I(y_batch; θ) by enumerating every class configuration. mc: [K, N, C] float64."""
    k = mc.shape[0]
    joint = np.ones((k, 1))
    for i in batch:
        joint = (joint[:, :, None] * mc[:, i, None, :]).reshape(k, -1)
    p = joint.mean(axis=0)
    h_joint = -np.sum(p * np.log(p))
    cond = sum(-np.sum(mc[:, i] * np.log(mc[:, i]), axis=1).mean() for i in batch)
    return float(h_joint - cond)


def _brute_batchbald(mc: np.ndarray, n: int) -> list[int]:
    batch: list[int] = []
    for _ in range(n):
        rest = [i for i in range(mc.shape[1]) if i not in batch]
        batch.append(max(rest, key=lambda i: _brute_joint_mi(mc, [*batch, i])))
    return batch


def test_batchbald_batch_of_one_is_bald_argmax() -> None:
    for seed in range(4):
        mc = make_full_inputs(50, seed=seed).mc_probs_K_N_C
        assert mc is not None
        got, score = batchbald_select(mc, 1, seed=0, return_scores=True)
        bald = bald_scores(mc)
        assert got[0] == int(bald.argmax())
        assert score[0] == pytest.approx(float(bald.max()), rel=1e-9)


def test_batchbald_exact_regime_equals_brute_force_greedy() -> None:
    mc = make_full_inputs(14, seed=3, n_classes=3, n_passes=5).mc_probs_K_N_C
    assert mc is not None
    mc64 = mc.double().numpy()
    expected = _brute_batchbald(mc64, 4)
    got, scores = batchbald_select(mc, 4, seed=0, return_scores=True, chunk_size=4)
    assert got.tolist() == expected
    np.testing.assert_allclose(
        scores, [_brute_joint_mi(mc64, expected[: t + 1]) for t in range(4)], rtol=1e-6
    )


def test_batchbald_sampled_regime_estimates_joint_mi() -> None:
    # C=10: exact up to 3 points (1000 configurations), sampled with 4000 configurations beyond
    mc = make_full_inputs(30, seed=1, n_classes=10, n_passes=8).mc_probs_K_N_C
    assert mc is not None
    got, scores = batchbald_select(mc, 5, seed=0, num_samples=4000, return_scores=True)
    mc64 = mc.double().numpy()
    brute = [_brute_joint_mi(mc64, got[: t + 1].tolist()) for t in range(5)]
    np.testing.assert_allclose(scores[:3], brute[:3], rtol=1e-6)
    np.testing.assert_allclose(scores[3:], brute[3:], atol=0.1)


def test_batchbald_avoids_duplicated_points() -> None:
    # two copies of the most informative point: BALD takes both, BatchBALD only one
    mc = make_full_inputs(20, seed=2, n_classes=3).mc_probs_K_N_C
    assert mc is not None
    best = int(bald_scores(mc).argmax())
    mc = torch.cat([mc, mc[:, best : best + 1]], dim=1)
    got = batchbald_select(mc, 2, seed=0)
    assert not {best, 20} <= set(got.tolist())


def test_batchbald_long_batch_does_not_underflow() -> None:
    mc = make_full_inputs(120, seed=4, n_classes=10, n_passes=4).mc_probs_K_N_C
    assert mc is not None
    got, scores = batchbald_select(mc, 60, seed=0, num_samples=200, return_scores=True)
    assert len(set(got.tolist())) == 60
    assert np.isfinite(scores).all()


# ====================================================================================== registry


def test_all_strategies_registered() -> None:
    assert list_strategies() == sorted(
        [
            "random",
            "entropy",
            "margin",
            "least-confidence",
            "bald",
            "batchbald",
            "coreset",
            "badge",
            "forgetting",
            "switch",
            "gauss",
            "sampled-switch",
            "sampled-count",
        ]
    )
    assert set(STRATEGIES) == set(list_strategies())


def test_unknown_name_lists_known_names() -> None:
    with pytest.raises(UnknownNameError, match=r"did you mean 'gauss'.*known strategies: badge, bald"):
        get_strategy("gaus")


def test_names_are_normalised() -> None:
    assert get_strategy("Least_Confidence").name == "least-confidence"


def test_unknown_option_names_allowed_ones() -> None:
    with pytest.raises(ConfigError, match="no option 'alpha'; allowed options: scores_file, tie_break"):
        get_strategy("switch", alpha=1)
    with pytest.raises(ConfigError, match="allowed options: none"):
        get_strategy("entropy", tie_break="random")


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("switch", {"tie_break": "margin"}, "'tie_break' must be one of \\['random', 'entropy'\\]"),
        ("batchbald", {"num_samples": 0}, "'num_samples' must be an integer >= 1"),
        ("batchbald", {"max_candidates": 2.5}, "'max_candidates'"),
        ("gauss", {"max_fit_samples": 1}, "'max_fit_samples' must be >= 2"),
    ],
)
def test_bad_option_values(name: str, options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        get_strategy(name, **options)


def test_strategy_options_and_repr() -> None:
    assert strategy_options("batchbald") == {"num_samples": 1000, "max_candidates": 2000, "chunk_size": None}
    assert (
        repr(get_strategy("switch", tie_break="entropy"))
        == "SwitchStrategy(tie_break='entropy', scores_file=None)"
    )


def test_register_custom_strategy() -> None:
    class LastRows(Strategy):
        name = "last-rows-test"

        def select(self, inputs: StrategyInputs, n: int, *, seed: int) -> Selection:
            idx = np.arange(inputs.n_pool - n, inputs.n_pool, dtype=np.int64)
            return Selection(indices=idx, scores=np.full(n, np.nan))

    try:
        register_strategy(LastRows)
        assert get_strategy("last-rows-test").select(
            StrategyInputs(n_pool=5), 2, seed=0
        ).indices.tolist() == [3, 4]
        with pytest.raises(ConfigError, match="already registered"):
            register_strategy(type("Other", (LastRows,), {}), name="last-rows-test")
        with pytest.raises(ConfigError, match="Strategy subclass"):
            register_strategy(int)  # type: ignore[arg-type]
    finally:
        STRATEGIES.pop("last-rows-test", None)


def test_strategies_pickle_round_trip(tmp_path: Path) -> None:
    # a Ray task or a process pool receives strategies pickled
    path = tmp_path / "s.npy"
    np.save(path, np.arange(10.0))
    inputs = make_full_inputs(30)
    for name in list_strategies():
        for strategy in (
            get_strategy(name),
            *([get_strategy(name, scores_file=path)] if "scores_file" in strategy_options(name) else []),
        ):
            clone = pickle.loads(pickle.dumps(strategy))
            assert repr(clone) == repr(strategy) and clone.requires == strategy.requires
    strategy = get_strategy("badge")
    a = strategy.select(only_declared(inputs, strategy.requires), 5, seed=1)
    b = pickle.loads(pickle.dumps(strategy)).select(only_declared(inputs, strategy.requires), 5, seed=1)
    np.testing.assert_array_equal(a.indices, b.indices)


def test_float64_inputs_accepted() -> None:
    inputs = make_full_inputs(30)
    double = dataclasses.replace(
        inputs,
        probs_N_C=inputs.probs_N_C.double(),  # type: ignore[union-attr]
        embeddings_N_D=inputs.embeddings_N_D.double(),  # type: ignore[union-attr]
        labeled_embeddings_L_D=inputs.labeled_embeddings_L_D.double(),  # type: ignore[union-attr]
        mc_probs_K_N_C=inputs.mc_probs_K_N_C.double(),  # type: ignore[union-attr]
    )
    for name in list_strategies():
        strategy = get_strategy(name)
        sel = strategy.select(only_declared(double, strategy.requires), 4, seed=0)
        assert sel.indices.dtype == np.int64 and sel.scores.dtype == np.float64


def test_shape_mismatch_is_reported() -> None:
    inputs = StrategyInputs(n_pool=5, probs_N_C=torch.full((4, 3), 1 / 3))
    with pytest.raises(ValueError, match=r"probs_N_C has 4 pool rows .* n_pool is 5"):
        get_strategy("entropy").select(inputs, 2, seed=0)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_strategies_run_on_cuda_inputs() -> None:
    inputs = make_full_inputs(64)
    on_gpu = dataclasses.replace(
        inputs,
        **{
            f.name: getattr(inputs, f.name).cuda()
            for f in dataclasses.fields(inputs)
            if isinstance(getattr(inputs, f.name), torch.Tensor)
        },
    )
    for name in list_strategies():
        strategy = get_strategy(name)
        gpu = strategy.select(only_declared(on_gpu, strategy.requires), 6, seed=0)
        cpu = strategy.select(only_declared(inputs, strategy.requires), 6, seed=0)
        assert gpu.indices.dtype == np.int64 and gpu.scores.dtype == np.float64
        assert len(set(gpu.indices.tolist())) == 6
        if name in ("entropy", "margin", "least-confidence", "bald", "coreset", "switch", "forgetting"):
            np.testing.assert_array_equal(gpu.indices, cpu.indices)
