"""The active-learning round: initial sets, protocol, resume, determinism, every strategy end to end."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest
import torch

from forgetting.data import build_eval_set, load_dataset
from forgetting.data.dataset import Split
from forgetting.exceptions import ConfigError, PoolExhaustedError
from forgetting.loop import LoopConfig, TrackConfig, derive_seed, initial_labeled_set, run_active_learning
from forgetting.strategies import list_strategies
from forgetting.training import TrainConfig


@lru_cache(maxsize=1)
def _mnist() -> tuple[Split, dict[str, Split]]:
    ds = load_dataset("mnist-5k", seed=0)
    g = torch.Generator().manual_seed(0)
    train_idx = torch.randperm(len(ds.train), generator=g)[:600]
    test = ds.test.subset(torch.arange(300))
    evals = {
        "test": test,
        "gaussian_noise-3": build_eval_set("gaussian_noise-3", test, seed=0),
        "digits": build_eval_set("digits", test, seed=0),
    }
    return ds.train.subset(train_idx), evals


def _config(strategy: str, **kw: object) -> LoopConfig:
    base: dict[str, object] = dict(
        strategy=strategy,
        initial_size=20,
        query_size=10,
        rounds=2,
        seed=0,
        train=TrainConfig(epochs=2, batch_size=32),
        mc_samples=4,
        device="cpu",
        model_options={"width": 8},
        pool_subsample=200,
    )
    base.update(kw)
    return LoopConfig(**base)


def test_initial_set_is_stratified_seeded_and_seed_dependent() -> None:
    labels = torch.arange(1000) % 10
    a = initial_labeled_set(labels, 20, seed=1)
    b = initial_labeled_set(labels, 20, seed=1)
    c = initial_labeled_set(labels, 20, seed=2)
    assert a.dtype == np.int64 and a.shape == (20,) and np.unique(a).size == 20
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert np.all(np.bincount(labels.numpy()[a], minlength=10) == 2)
    u = initial_labeled_set(labels, 25, selection="uniform", seed=1)
    assert u.shape == (25,) and np.unique(u).size == 25
    # 25 over 10 classes: 2 each, the remaining 5 drawn from the rest
    s = initial_labeled_set(labels, 25, seed=1)
    assert np.unique(s).size == 25 and np.all(np.bincount(labels.numpy()[s], minlength=10) >= 2)
    with pytest.raises(ConfigError, match="initial_selection"):
        initial_labeled_set(labels, 5, selection="balanced")
    with pytest.raises(PoolExhaustedError):
        initial_labeled_set(labels, 1001)


def test_initial_seed_shares_one_initial_set_across_seeds() -> None:
    train, evals = _mnist()
    evals = {"test": evals["test"]}

    def initial(seed: int, initial_seed: int | None) -> np.ndarray:
        cfg = _config(
            "random",
            rounds=1,
            seed=seed,
            initial_seed=initial_seed,
            pool_subsample=None,
            initial_selection="uniform",
            train=TrainConfig(epochs=1, batch_size=32),
            track=TrackConfig(enabled=True),
        )  # fmt: skip  (tracking records the round-0 pool)
        record = run_active_learning(train, evals, 10, cfg)[0]
        return np.setdiff1d(np.arange(len(train)), record.pool_indices)

    shared = [initial(seed, 7) for seed in (0, 1)]
    np.testing.assert_array_equal(shared[0], shared[1])
    expected = initial_labeled_set(train.targets, 20, selection="uniform", seed=derive_seed(7, 0, 0))
    np.testing.assert_array_equal(shared[0], expected)
    assert not np.array_equal(initial(0, None), initial(1, None))  # unset: each seed draws its own
    with pytest.raises(ConfigError, match="initial_seed"):
        LoopConfig(initial_seed=-1)


def test_derived_seeds_are_distinct() -> None:
    seeds = {derive_seed(s, r, p) for s in range(3) for r in range(5) for p in range(7)}
    assert len(seeds) == 3 * 5 * 7


@pytest.mark.parametrize("strategy", list_strategies())
def test_three_rounds_of_every_strategy_on_mnist(strategy: str) -> None:
    """Every strategy runs 3 query rounds on mnist-5k with small-cnn; the protocol's invariants hold."""
    train, evals = _mnist()
    cfg = _config(strategy, rounds=3, model_options={"width": 8, "dropout": 0.25})
    records = run_active_learning(train, evals, 10, cfg)
    assert [r.round for r in records] == [0, 1, 2, 3]
    assert [r.n_labeled for r in records] == [20, 30, 40, 50]
    queried = np.concatenate([r.query_indices for r in records])
    initial = initial_labeled_set(train.targets, 20, seed=derive_seed(0, 0, 0))
    assert queried.size == 30 and np.unique(queried).size == 30  # never re-selected
    assert not np.isin(queried, initial).any()  # a labeled sample is never queried
    assert records[-1].query_indices.size == 0  # the last round only evaluates
    for r in records:
        assert set(r.metrics) == {"test", "gaussian_noise-3", "digits"}
        for m in r.metrics.values():
            assert 0.0 <= m["accuracy"] <= 1.0 and m["nll"] > 0 and 0.0 <= m["ece"] <= 1.0
        assert set(r.seconds) == {"train", "track", "query", "eval"}
        assert r.query_scores.shape == r.query_indices.shape
    dynamic = strategy in {"switch", "gauss", "sampled-switch", "sampled-count", "forgetting"}
    assert bool(records[0].dynamics) == dynamic  # tracking only when the strategy needs it
    if dynamic:
        assert records[0].dynamics["switches"].shape == records[0].pool_indices.shape
        assert records[0].seconds["track"] > 0
    else:
        assert records[0].seconds["track"] == 0.0


def test_same_seed_same_queries_different_seed_differs() -> None:
    train, evals = _mnist()
    evals = {"test": evals["test"]}
    a = run_active_learning(train, evals, 10, _config("switch"))
    b = run_active_learning(train, evals, 10, _config("switch"))
    c = run_active_learning(train, evals, 10, _config("switch", seed=1))
    for ra, rb in zip(a, b, strict=True):
        np.testing.assert_array_equal(ra.query_indices, rb.query_indices)
        assert ra.metrics == rb.metrics
    assert not np.array_equal(a[0].query_indices, c[0].query_indices)


def test_resume_continues_exactly_where_it_stopped() -> None:
    train, evals = _mnist()
    evals = {"test": evals["test"]}
    full = run_active_learning(train, evals, 10, _config("gauss"))
    seen: list[int] = []
    resumed = run_active_learning(
        train, evals, 10, _config("gauss"), completed=full[:1], on_round=lambda r: seen.append(r.round)
    )
    assert seen == [1, 2]
    for a, b in zip(full[1:], resumed, strict=True):
        assert a.n_labeled == b.n_labeled
        np.testing.assert_array_equal(a.query_indices, b.query_indices)


def test_pool_exhaustion_partial_and_error() -> None:
    train, evals = _mnist()
    small = train.subset(torch.arange(45))
    evals = {"test": evals["test"]}
    records = run_active_learning(
        small, evals, 10, _config("random", query_size=20, rounds=3, pool_subsample=None)
    )
    assert [r.n_labeled for r in records] == [20, 40, 45]  # a partial final query, then the pool is empty
    with pytest.raises(PoolExhaustedError, match="query_size"):
        run_active_learning(
            small,
            evals,
            10,
            _config("random", query_size=20, rounds=3, on_exhausted="error", pool_subsample=None),
        )


def test_reference_first_observation_reaches_the_tracker() -> None:
    train, evals = _mnist()
    counts = {}
    for mode in ("exact", "reference"):
        cfg = _config("switch", rounds=1, track=TrackConfig(first_observation=mode))
        counts[mode] = run_active_learning(train, {"test": evals["test"]}, 10, cfg)[0].dynamics["switches"]
    extra = counts["reference"].astype(int) - counts["exact"].astype(int)
    assert set(np.unique(extra).tolist()) <= {0, 1} and extra.sum() > 0  # one switch at most, per sample
    with pytest.raises(ConfigError, match="first_observation"):
        TrackConfig(first_observation="paper")  # type: ignore[arg-type]


def test_tracking_on_request_for_a_strategy_without_dynamics() -> None:
    train, evals = _mnist()
    cfg = _config("entropy", rounds=1, track=TrackConfig(enabled=True, unit="step", every=1))
    records = run_active_learning(train, {"test": evals["test"]}, 10, cfg)
    assert "switches" in records[0].dynamics and records[0].seconds["track"] > 0


def test_dynamics_strategy_with_tracking_disabled_is_an_error() -> None:
    train, evals = _mnist()
    with pytest.raises(ConfigError, match="dynamics"):
        run_active_learning(
            train, {"test": evals["test"]}, 10, _config("gauss", track=TrackConfig(enabled=False))
        )


def test_bald_needs_dropout() -> None:
    train, evals = _mnist()
    with pytest.raises(ConfigError, match="dropout"):
        run_active_learning(
            train, {"test": evals["test"]}, 10, _config("bald", model_options={"dropout": 0.0})
        )
