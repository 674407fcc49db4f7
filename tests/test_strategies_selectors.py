"""Unit tests of the plain selectors: seeded top-k tie-breaks, GauSS with every guard, weighted sampling."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from forgetting.exceptions import ConfigError, PoolExhaustedError
from forgetting.strategies import (
    GAUSS_FALLBACKS,
    GaussInfo,
    gauss_select,
    sample_without_replacement,
    sampled_count_select,
    sampled_switch_select,
    select_top_k,
    uniform_select,
)
from forgetting.strategies.selectors import _select_from_mixture

# ====================================================================================== select_top_k


def test_top_k_takes_the_highest_in_descending_order() -> None:
    scores = np.array([0.3, 2.0, -1.0, 5.0, 1.5])
    assert select_top_k(scores, 3, seed=0).tolist() == [3, 1, 4]


def test_top_k_numpy_and_torch_agree() -> None:
    scores = np.random.default_rng(0).integers(0, 5, 200)
    for seed in range(3):
        np.testing.assert_array_equal(
            select_top_k(scores, 17, seed=seed), select_top_k(torch.from_numpy(scores), 17, seed=seed)
        )


def test_top_k_returns_int64_positions() -> None:
    got = select_top_k(torch.arange(10, dtype=torch.uint8), 4, seed=0)
    assert got.dtype == np.int64 and got.tolist() == [9, 8, 7, 6]


def test_top_k_ties_reproducible_and_seed_dependent() -> None:
    scores = np.array([3, 1, 1, 1, 1, 1, 1, 0])
    first = select_top_k(scores, 3, seed=4)
    np.testing.assert_array_equal(first, select_top_k(scores, 3, seed=4))
    assert first[0] == 0 and set(first[1:].tolist()) <= {1, 2, 3, 4, 5, 6}
    assert len({tuple(select_top_k(scores, 3, seed=s)) for s in range(10)}) > 1


def test_top_k_tie_break_is_uniform() -> None:
    # 2 slots among 4 tied items: each item is taken with probability 1/2
    scores = np.array([9.0, 1.0, 1.0, 1.0, 1.0, 0.0])
    hits = np.zeros(6)
    for seed in range(800):
        hits[select_top_k(scores, 3, seed=seed)] += 1
    assert hits[0] == 800 and hits[5] == 0
    np.testing.assert_allclose(hits[1:5] / 800, 0.5, atol=0.07)


def test_top_k_all_above_cut_always_taken() -> None:
    rng = np.random.default_rng(1)
    scores = rng.integers(0, 8, 1000)
    for seed in range(5):
        got = select_top_k(scores, 100, seed=seed)
        cut = scores[got].min()
        assert set(np.flatnonzero(scores > cut)) <= set(got.tolist())
        assert np.all(np.diff(scores[got]) <= 0)


def test_top_k_nan_ranks_lowest() -> None:
    scores = np.array([np.nan, 1.0, np.nan, -5.0])
    assert select_top_k(scores, 2, seed=0).tolist() == [1, 3]
    assert set(select_top_k(scores, 4, seed=0)[2:].tolist()) == {0, 2}


def test_top_k_infinite_scores() -> None:
    scores = np.array([1.0, np.inf, -np.inf, np.inf])
    assert set(select_top_k(scores, 2, seed=0).tolist()) == {1, 3}


def test_top_k_secondary_breaks_ties_first() -> None:
    scores = np.array([2, 2, 2, 2, 5])
    secondary = np.array([0.1, 0.9, 0.5, 0.7, 0.0])
    assert select_top_k(scores, 3, seed=0, secondary=secondary).tolist() == [4, 1, 3]
    with pytest.raises(ValueError, match="secondary has 2 elements"):
        select_top_k(scores, 3, seed=0, secondary=np.zeros(2))


def test_top_k_whole_pool() -> None:
    scores = np.array([1, 3, 2, 3])
    got = select_top_k(scores, 4, seed=0)
    assert sorted(got.tolist()) == [0, 1, 2, 3]
    assert scores[got].tolist() == [3, 3, 2, 1]


@pytest.mark.parametrize(("n", "error"), [(0, ConfigError), (-1, ConfigError), (6, PoolExhaustedError)])
def test_top_k_bad_n(n: int, error: type[Exception]) -> None:
    with pytest.raises(error):
        select_top_k(np.zeros(5), n, seed=0)


def test_top_k_rejects_2d_scores() -> None:
    with pytest.raises(ValueError, match=r"1-D \[N\]"):
        select_top_k(np.zeros((3, 2)), 1, seed=0)


def test_bad_seed() -> None:
    with pytest.raises(ConfigError, match="seed"):
        select_top_k(np.zeros(5), 1, seed=-1)


@pytest.mark.slow
def test_top_k_million_scores_under_a_second() -> None:
    scores = np.random.default_rng(0).integers(0, 15, 1_000_000)  # coarse counts: heavy ties at the cut
    start = time.perf_counter()
    got = select_top_k(scores, 1000, seed=0)
    assert time.perf_counter() - start < 1.0
    assert len(np.unique(got)) == 1000


# ====================================================================================== uniform / weighted


def test_uniform_select() -> None:
    got = uniform_select(50, 10, seed=1)
    assert got.dtype == np.int64 and len(set(got.tolist())) == 10 and got.max() < 50
    np.testing.assert_array_equal(got, uniform_select(50, 10, seed=1))
    with pytest.raises(PoolExhaustedError):
        uniform_select(5, 6, seed=0)


def test_sample_without_replacement_is_proportional() -> None:
    weights = np.array([1.0, 3.0, 0.0, 6.0])
    hits = np.zeros(4)
    for seed in range(1500):
        hits[sample_without_replacement(weights, 1, seed=seed)] += 1
    np.testing.assert_allclose(hits / 1500, weights / 10, atol=0.035)


def test_sample_without_replacement_second_draw_excludes_the_first() -> None:
    # P(second = 1 | first = 0) = w1 / (w1 + w2) = 0.25 with weights (100, 1, 3): successive sampling
    weights = np.array([100.0, 1.0, 3.0])
    firsts_zero = [sample_without_replacement(weights, 2, seed=s) for s in range(1500)]
    seconds = np.array([pair[1] for pair in firsts_zero if pair[0] == 0])
    assert np.mean(seconds == 1) == pytest.approx(0.25, abs=0.04)


def test_sample_without_replacement_zero_weights_last_and_errors() -> None:
    got = sample_without_replacement(np.array([0.0, 1.0, 0.0, 2.0]), 4, seed=0)
    assert set(got[:2].tolist()) == {1, 3}
    with pytest.raises(ValueError, match="non-negative"):
        sample_without_replacement(np.array([1.0, -1.0]), 1, seed=0)


def test_sampled_count_select_rejects_nan() -> None:
    with pytest.raises(ValueError, match="finite"):
        sampled_count_select(np.array([1.0, np.nan]), 1, seed=0)


# ====================================================================================== sampled_switch


def reference_init_centers(u: np.ndarray, n: int, rng: np.random.Generator) -> list[int]:
    """``init_centers`` of olivesgatech/gauss (sampledswitchsampler.py, order='max', l2), bug-fixed, as a
    plain loop: ``D2`` stays the min distance (the reference overwrites it with ``u * D2``, compounding the
    weights). Seeded ``rng`` replaces the global numpy RNG / ``stats.rv_discrete``; ties of the first argmax
    and of the fill are broken at random, as the library does (the reference takes index order)."""
    top = np.flatnonzero(u == u.max())
    ind = int(rng.choice(top))
    mu, inds_all = [u[ind]], [ind]
    d2 = np.zeros(u.size)
    while len(mu) < n:
        if len(mu) == 1:
            d2 = np.abs(u - mu[0]).astype(float)
        else:
            new_d = np.abs(u - mu[-1]).astype(float)
            for i in range(u.shape[0]):
                if d2[i] > new_d[i]:
                    d2[i] = new_d[i]
        weighted = u * d2  # the fix: a new array, d2 keeps the distances
        if np.sum(weighted) == 0.0:
            leftover = np.delete(np.arange(u.shape[0]), inds_all)
            keys = np.lexsort((rng.random(leftover.size), -u[leftover]))  # top counts, random ties
            inds_all.extend(int(i) for i in leftover[keys[: n - len(inds_all)]])
            break
        p = weighted**2 / np.sum(weighted**2)
        ind = int(rng.choice(u.size, p=p))
        mu.append(u[ind])
        inds_all.append(ind)
    return inds_all


#: Few distinct values, ties, zeros: the shape of real switch counts.
_FEW_VALUES = np.array([0] * 12 + [1] * 9 + [2] * 7 + [3] * 4 + [5] * 3 + [8] * 2 + [9], dtype=np.float64)


def test_sampled_switch_first_pick_is_the_argmax_with_random_ties() -> None:
    counts = np.array([3.0, 9.0, 0.0, 9.0, 1.0, 9.0])
    firsts = {int(sampled_switch_select(counts, 2, seed=s)[0]) for s in range(40)}
    assert firsts == {1, 3, 5}


def test_sampled_switch_one_per_distinct_value_then_the_top_counts() -> None:
    positive = np.unique(_FEW_VALUES[_FEW_VALUES > 0])
    for seed in range(30):
        picked = sampled_switch_select(_FEW_VALUES, 15, seed=seed)
        assert picked.dtype == np.int64 and np.unique(picked).size == 15
        values = _FEW_VALUES[picked]
        head, fill = values[: positive.size], values[positive.size :]
        assert values[0] == _FEW_VALUES.max()
        assert sorted(head.tolist()) == positive.tolist()  # one per distinct value, no zero before the fill
        rest = np.delete(_FEW_VALUES, picked[: positive.size])
        assert sorted(fill.tolist(), reverse=True) == sorted(rest, reverse=True)[: fill.size]
        assert fill.tolist() == sorted(fill.tolist(), reverse=True)
    # zero counts come only from the fill, once no positive count is left
    sparse = np.array([0.0, 4.0, 0.0, 2.0, 0.0])
    for seed in range(10):
        got = sampled_switch_select(sparse, 4, seed=seed)
        assert got[:2].tolist() == [1, 3] and set(got[2:].tolist()) <= {0, 2, 4}


def test_sampled_switch_matches_the_ported_reference_in_distribution() -> None:
    from scipy import stats

    n, runs = 4, 1500  # 4 < 6 distinct positive values: no fill, every pick is a weighted draw
    ours = np.array([_FEW_VALUES[sampled_switch_select(_FEW_VALUES, n, seed=s)] for s in range(runs)])
    ref_rng = np.random.default_rng(12345)
    ref = np.array([_FEW_VALUES[reference_init_centers(_FEW_VALUES, n, ref_rng)] for _ in range(runs)])
    values = np.unique(_FEW_VALUES)
    # (a) how often each value is among the picks: equal within 0.05 (about 3 standard errors of the
    # difference of two frequencies over 1500 runs)
    freq_ours = np.array([(ours == v).any(axis=1).mean() for v in values])
    freq_ref = np.array([(ref == v).any(axis=1).mean() for v in values])
    np.testing.assert_allclose(freq_ours, freq_ref, atol=0.05)
    assert freq_ours[0] == freq_ref[0] == 0.0  # count 0 never drawn before the fill
    # (b) the value drawn at each position: a chi-square two-sample test of homogeneity
    for pos in range(1, n):
        table = np.array([[np.sum(sample[:, pos] == v) for v in values[1:]] for sample in (ours, ref)])
        table = table[:, table.sum(axis=0) > 0]
        assert stats.chi2_contingency(table).pvalue > 1e-3, (pos, table)
    # (c) the mean value of the last pick (the reference's compounding bug moves it by about 1 here)
    assert abs(ours[:, 3].mean() - ref[:, 3].mean()) < 0.4


def test_sampled_switch_on_real_valued_scores_and_errors() -> None:
    scores = np.random.default_rng(0).gamma(2.0, 1.0, 500)  # every value distinct (reduced pixel counts)
    got = sampled_switch_select(scores, 50, seed=0)
    assert got[0] == np.argmax(scores) and np.unique(got).size == 50
    assert sampled_switch_select(np.zeros(5), 3, seed=1).size == 3  # all zero: argmax, then the fill
    with pytest.raises(ValueError, match="non-negative"):
        sampled_switch_select(np.array([1.0, -2.0]), 1, seed=0)
    with pytest.raises(ValueError, match="finite"):
        sampled_switch_select(np.array([1.0, np.inf]), 1, seed=0)
    with pytest.raises(PoolExhaustedError):
        sampled_switch_select(np.ones(3), 4, seed=0)
    np.testing.assert_array_equal(
        sampled_switch_select(torch.from_numpy(scores), 50, seed=0), got
    )  # torch input, same seed, same picks


# ====================================================================================== gauss_select


def _bimodal(n_low: int = 600, n_high: int = 200, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.poisson(1.0, n_low), 10 + rng.poisson(4.0, n_high)]).astype(np.int64)


def test_gauss_samples_from_the_high_component_with_info() -> None:
    counts = _bimodal()
    got, info = gauss_select(counts, 50, seed=0, return_info=True)
    assert isinstance(info, GaussInfo) and info.fallback is None
    assert got.dtype == np.int64 and len(set(got.tolist())) == 50
    assert (got >= 600).all()  # only members of the high component
    assert info.means[0] < 3 < 10 < info.means[1]
    assert sum(info.weights) == pytest.approx(1.0)
    assert info.n_high == pytest.approx(200, abs=5) and info.n_fit == 800
    dens = info.component_densities(np.array([1.0, 14.0]))
    assert dens.shape == (2, 2) and dens[0, 0] > dens[1, 0] and dens[1, 1] > dens[0, 1]


def test_gauss_is_a_sampler_not_a_top_k() -> None:
    counts = _bimodal()
    picks = {tuple(sorted(gauss_select(counts, 20, seed=s).tolist())) for s in range(5)}
    assert len(picks) == 5
    top = set(np.argsort(-counts, kind="stable")[:20].tolist())
    assert any(set(p) != top for p in picks)


def test_gauss_reproducible() -> None:
    counts = _bimodal(seed=3)
    np.testing.assert_array_equal(gauss_select(counts, 30, seed=7), gauss_select(counts, 30, seed=7))
    np.testing.assert_array_equal(
        gauss_select(counts, 30, seed=7), gauss_select(torch.from_numpy(counts), 30, seed=7)
    )


def test_gauss_draws_proportional_to_responsibility() -> None:
    # mixture N(0, 4), N(10, 4), equal weights: x = 5.5 has responsibility sigmoid(1.25) = 0.777, x = 10 ~1
    x = np.array([0.0, 1.0, 5.5, 10.0])
    params = {"means": np.array([0.0, 10.0]), "variances": np.full(2, 4.0), "weights": np.full(2, 0.5)}
    hits = np.zeros(4)
    for seed in range(2000):
        got, info = _select_from_mixture(x, 1, np.random.default_rng(seed), n_fit=4, **params)
        hits[got] += 1
    assert info.fallback is None and info.n_high == 2
    resp = 1 / (1 + np.exp(-1.25))
    assert hits[:2].sum() == 0
    assert hits[2] / 2000 == pytest.approx(resp / (resp + 1.0), abs=0.035)


def test_gauss_all_equal_counts_is_uniform() -> None:
    counts = np.full(100, 4)
    got, info = gauss_select(counts, 10, seed=0, return_info=True)
    assert info.fallback == "all-equal" and info.n_high == 0 and np.isnan(info.means).all()
    assert len(set(got.tolist())) == 10
    hits = np.zeros(100)
    for seed in range(200):
        hits[gauss_select(counts, 10, seed=seed)] += 1
    assert hits.min() > 0  # every sample reachable: uniform (expected 20 each)


def test_gauss_too_few_high_members_falls_back_to_top_n() -> None:
    counts = np.concatenate([np.zeros(95, dtype=np.int64), np.full(5, 50)])
    got, info = gauss_select(counts, 10, seed=0, return_info=True)
    assert info.fallback == "too-few-high" and info.n_high == 5
    assert sorted(got[:5].tolist()) == list(range(95, 100))  # the top counts first, then zeros at random


def test_gauss_exactly_n_members_is_top_n_as_in_the_reference() -> None:
    # gmmss.py samples only `if length > n`; with exactly n members it takes the top-n by count. A wide low
    # component owns the far tail here, so the 3 members (near 6) are not the 3 highest counts.
    x = np.array([0.0, 1.0, 2.0, 5.8, 6.0, 6.2, 30.0, 31.0])
    params = {"means": np.array([5.0, 6.0]), "variances": np.array([100.0, 0.25]), "weights": np.full(2, 0.5)}
    members = {3, 4, 5}
    for seed in range(5):
        got, info = _select_from_mixture(x, 3, np.random.default_rng(seed), n_fit=8, **params)
        assert info.n_high == 3 and info.fallback == "too-few-high"
        assert set(got.tolist()) == {5, 6, 7}  # the reference's backup: argsort(x)[-3:]
        got, info = _select_from_mixture(x, 2, np.random.default_rng(seed), n_fit=8, **params)
        assert info.fallback is None and set(got.tolist()) <= members  # more than n: sampled inside
    # the usual case, members = the upper tail: exactly n members give the same set either way
    counts = np.concatenate([np.zeros(95, dtype=np.int64), np.full(5, 50)])
    got, info = gauss_select(counts, 5, seed=0, return_info=True)
    assert info.n_high == 5 and info.fallback == "too-few-high" and set(got.tolist()) == set(range(95, 100))


def test_gauss_subsample_without_two_values_is_degenerate_fit() -> None:
    counts = np.zeros(5000, dtype=np.int64)
    counts[1234] = 9  # one outlier: a 50-value subsample almost surely misses it
    got, info = gauss_select(counts, 5, seed=0, return_info=True, max_fit_samples=50)
    assert info.fallback == "degenerate-fit" and info.n_fit == 50
    assert got[0] == 1234


def test_gauss_fits_on_a_bounded_subsample_of_large_pools() -> None:
    counts = np.tile(_bimodal(), 40)  # 32k values
    got, info = gauss_select(counts, 100, seed=2, return_info=True, max_fit_samples=5000)
    assert info.n_fit == 5000 and info.fallback is None
    assert (counts[got] >= 7).all()


def test_gauss_nan_responsibilities_fall_back_to_top_n() -> None:
    x = np.array([0.0, 1.0, 2.0, 3.0, 9.0])
    rng = np.random.default_rng(0)
    got, info = _select_from_mixture(
        x, 2, rng, means=np.array([1.0, 9.0]), variances=np.zeros(2), weights=np.array([0.5, 0.5]), n_fit=5
    )
    assert info.fallback == "degenerate-responsibilities"
    assert got.tolist() == [4, 3]


def test_gauss_zero_weight_high_component_falls_back_to_top_n() -> None:
    x = np.array([0.0, 1.0, 2.0, 3.0, 9.0])
    rng = np.random.default_rng(0)
    got, info = _select_from_mixture(
        x, 2, rng, means=np.array([1.0, 9.0]), variances=np.ones(2), weights=np.array([1.0, 0.0]), n_fit=5
    )
    assert info.fallback == "too-few-high" and info.n_high == 0
    assert got.tolist() == [4, 3]


def test_gauss_fallback_reasons_are_documented() -> None:
    assert set(GAUSS_FALLBACKS) == {
        "all-equal",
        "degenerate-fit",
        "too-few-high",
        "degenerate-responsibilities",
    }


@pytest.mark.parametrize(("n", "error"), [(0, ConfigError), (101, PoolExhaustedError)])
def test_gauss_bad_n(n: int, error: type[Exception]) -> None:
    with pytest.raises(error):
        gauss_select(_bimodal(80, 20), n, seed=0)


def test_gauss_rejects_nan_counts() -> None:
    with pytest.raises(ValueError, match="finite"):
        gauss_select(np.array([1.0, np.nan, 3.0]), 1, seed=0)
