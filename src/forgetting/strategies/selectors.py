"""Selectors: plain, seeded functions that turn scores or features into query positions.

Every selector returns ``int64 [n]`` positions into the array it was given, unique and in selection order,
and validates ``n``: ``n < 1`` raises :class:`~forgetting.exceptions.ConfigError`, ``n`` larger than the
number of rows raises :class:`~forgetting.exceptions.PoolExhaustedError`. None of them needs a model.

* :func:`select_top_k` - the ``n`` highest scores, ties at the cut broken uniformly at random (seeded),
  optionally by a secondary score first. ``O(N)`` (``np.partition``).
* :func:`uniform_select` - ``n`` positions uniformly without replacement.
* :func:`sample_without_replacement` - successive sampling proportional to non-negative weights
  (Gumbel-top-k, one pass, ``O(N)``).
* :func:`gauss_select` - the GauSS selector: 2-component 1-D Gaussian mixture on counts, weighted sampling
  inside the high-mean component.
* :func:`sampled_switch_select` - the ``sampled-switch`` rule of the authors' code: weighted 1-D k-means++
  seeding on counts from the argmax, then a top-count fill (bug-fixed; vectorised over distinct values).
* :func:`sampled_count_select` - ``P(i) ∝ count_i²`` without replacement, the ``sampled-count`` rule.
* :func:`k_center_greedy` - greedy k-center (farthest-first traversal) against optional fixed centres.
* :func:`kmeans_pp_select` - k-means++ seeding (D² sampling) on features.
* :func:`badge_select` - k-means++ seeding on BADGE gradient embeddings without materialising them.

Geometric selectors keep ``O(N)`` state (a min-distance vector) and never build an ``N × N`` matrix; each
step costs one matrix-vector product over the pool, so a run is ``O(n·N·D)`` time and ``O(N·D)`` memory
(the input itself). They run on the device of their inputs and do not synchronise with the host per step.
"""

from __future__ import annotations

import functools
import logging
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import torch
from scipy.special import expit

from forgetting.exceptions import ConfigError, InputError, ShapeError
from forgetting.strategies.common import (
    CHUNK_ELEMENTS,
    as_numpy_1d,
    check_n,
    check_seed,
    uniform_draws,
    working_float,
)

logger = logging.getLogger(__name__)

__all__ = [
    "GAUSS_FALLBACKS",
    "GaussInfo",
    "badge_factors",
    "badge_select",
    "badge_sq_distances",
    "gauss_select",
    "k_center_greedy",
    "kmeans_pp_select",
    "min_distances",
    "sample_without_replacement",
    "sampled_count_select",
    "sampled_switch_select",
    "select_top_k",
    "uniform_select",
]


# --------------------------------------------------------------------------------------------- top-k


def _top_k(scores: np.ndarray, n: int, rng: np.random.Generator, secondary: np.ndarray | None) -> np.ndarray:
    """Positions of the ``n`` largest of ``scores`` (float64, no NaN), ordered by score descending.

    Elements tied at the cut are chosen by ``secondary`` (descending) and then uniformly at random; the
    order among equal keys is random too. ``O(N + n log n)``.
    """
    size = scores.size
    if n == size:
        selected = np.arange(size)
    else:
        kth = np.partition(scores, size - n)[size - n]  # the n-th largest value
        above = np.flatnonzero(scores > kth)  # fewer than n
        tied = np.flatnonzero(scores == kth)  # at least n - len(above)
        need = n - above.size
        if need == tied.size:
            pick = tied
        elif secondary is None:
            pick = rng.choice(tied, size=need, replace=False)
        else:
            pick = tied[_top_k(secondary[tied], need, rng, None)]
        selected = np.concatenate([above, pick])
    keys = [rng.random(selected.size)]  # lexsort: last key is the primary one
    if secondary is not None:
        keys.append(-secondary[selected])
    keys.append(-scores[selected])
    return selected[np.lexsort(keys)].astype(np.int64, copy=False)


def _nan_to_lowest(values: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(values), -np.inf, values)


def select_top_k(
    scores: np.ndarray | torch.Tensor,
    n: int,
    *,
    seed: int,
    secondary: np.ndarray | torch.Tensor | None = None,
) -> np.ndarray:
    """The positions of the ``n`` highest scores, highest first.

    Ties at the ``n``-th score are broken by ``secondary`` (higher first) when given, then uniformly at
    random, reproducibly by ``seed``: the same seed and scores give the same positions. NaN ranks below every
    number. ``O(N)``: a partition finds the cut, only the tied elements are sampled and only the ``n`` chosen
    are sorted.

    Args:
        scores: ``[N]`` numbers (numpy or torch on any device; converted to float64 on the host once).
        n: how many to pick, ``1 <= n <= N``.
        seed: seed of the tie-break.
        secondary: optional ``[N]`` tie-break score, aligned with ``scores``.

    Returns:
        int64 ``[n]`` unique positions into ``scores``.
    """
    values = as_numpy_1d(scores, "scores")
    n = check_n(n, values.size)
    rng = np.random.default_rng(check_seed(seed))
    second = None
    if secondary is not None:
        second = as_numpy_1d(secondary, "secondary")
        if second.size != values.size:
            raise InputError(f"secondary has {second.size} elements but scores has {values.size}")
        second = _nan_to_lowest(second)
    return _top_k(_nan_to_lowest(values), n, rng, second)


def uniform_select(n_pool: int, n: int, *, seed: int) -> np.ndarray:
    """``n`` distinct positions in ``range(n_pool)``, uniformly at random (seeded). Returns int64 ``[n]``."""
    n = check_n(n, n_pool)
    rng = np.random.default_rng(check_seed(seed))
    return rng.choice(n_pool, size=n, replace=False).astype(np.int64, copy=False)


def _gumbel_top_k(log_weights: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Successive sampling without replacement, ``P ∝ exp(log_weights)`` among the remaining, via Gumbel keys.

    Items with ``-inf`` log-weight come last, in uniformly random order.
    """
    keys = log_weights + rng.gumbel(size=log_weights.size)
    return _top_k(keys, n, rng, None)


def sample_without_replacement(weights: np.ndarray | torch.Tensor, n: int, *, seed: int) -> np.ndarray:
    """``n`` positions drawn one after another with probability proportional to ``weights`` among the rest.

    Implemented as Gumbel-top-k (Kool et al. 2019): the top ``n`` of ``log w_i + Gumbel_i`` have exactly the
    distribution of sequential weighted sampling without replacement, in one ``O(N)`` pass. When fewer than
    ``n`` weights are positive, the remaining slots are filled uniformly at random from the zero-weight items.

    Args:
        weights: ``[N]`` non-negative finite weights.
        n: ``1 <= n <= N``.
        seed: seed of the draw.

    Returns:
        int64 ``[n]`` positions in draw order.
    """
    w = as_numpy_1d(weights, "weights")
    n = check_n(n, w.size)
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise InputError("weights must be finite and non-negative")
    rng = np.random.default_rng(check_seed(seed))
    with np.errstate(divide="ignore"):
        return _gumbel_top_k(np.log(w), n, rng)


def _check_counts(counts: np.ndarray | torch.Tensor, rule: str) -> np.ndarray:
    c = as_numpy_1d(counts, "counts")
    if not np.all(np.isfinite(c)):
        raise InputError("counts must be finite; NaN or inf found")
    if c.size and np.any(c < 0):
        raise InputError(f"counts must be non-negative for {rule}; the smallest is {c.min()}")
    return c


def sampled_count_select(counts: np.ndarray | torch.Tensor, n: int, *, seed: int) -> np.ndarray:
    """The ``sampled-count`` rule: draw ``n`` samples without replacement with ``P(i) ∝ count_i²``.

    Each draw takes sample ``i`` with probability ``count_i² / Σ_remaining count_j²`` (D² sampling from a
    single centre at zero that never moves). Samples with count 0 are drawn only once every positive count
    is taken, uniformly at random. A softer alternative to top-k that is in no paper; the authors'
    ``sampled-switch`` is :func:`sampled_switch_select`.

    Args:
        counts: ``[N]`` non-negative counts (switch counts, or any non-negative score).
        n: ``1 <= n <= N``.
        seed: seed of the draw.

    Returns:
        int64 ``[n]`` positions in draw order.
    """
    c = _check_counts(counts, "count² sampling")
    n = check_n(n, c.size)
    rng = np.random.default_rng(check_seed(seed))
    with np.errstate(divide="ignore"):
        return _gumbel_top_k(2.0 * np.log(c), n, rng)


def sampled_switch_select(counts: np.ndarray | torch.Tensor, n: int, *, seed: int) -> np.ndarray:
    """The ``sampled-switch`` rule: weighted one-dimensional k-means++ seeding on the counts, then a fill.

    This is ``init_centers`` of the authors' code (olivesgatech/gauss,
    ``activelearning/qustrategies/classification/sampledswitchsampler.py``) without its bug:

    1. the first pick is a sample of the largest count (ties: uniformly at random, seeded; the reference
       takes the first index);
    2. every next pick is a sample ``i`` drawn with probability ``∝ (count_i · d_i)²``, where ``d_i`` is the
       distance from ``count_i`` to the nearest count picked so far. The reference overwrites ``d`` with
       ``count · d`` after each draw, so its weights compound (``count^t · d``); here ``d`` stays a distance;
    3. once every weight is zero, the remaining slots go to the largest counts not yet picked (ties at the
       cut uniformly at random, seeded; the reference follows ``argsort`` order).

    Consequences: a sample whose count equals a picked count has ``d = 0``, so until the fill at most one
    sample per distinct count value is drawn, and count 0 (weight 0) is never drawn before the fill. With
    integer switch counts the draws stop after at most as many picks as there are distinct positive counts,
    so the rule is top-n plus a few spread-out picks.

    Vectorised over the distinct values: the weight of value ``v`` with ``m`` members is ``m · (v·d)²``, a
    value is drawn with probability proportional to it, then one of its members uniformly at random. Cost:
    ``O(N log N)`` for the grouping plus ``O(K)`` per draw for ``K`` distinct values (at most ``min(n, K)``
    draws) plus ``O(N)`` for the fill; no Python loop over ``N``.

    Args:
        counts: ``[N]`` non-negative counts (integer switch counts, or any non-negative score).
        n: ``1 <= n <= N``.
        seed: seed of the tie-breaks and the draws.

    Returns:
        int64 ``[n]`` positions in pick order.
    """
    c = _check_counts(counts, "sampled-switch")
    n = check_n(n, c.size)
    rng = np.random.default_rng(check_seed(seed))
    values_K, inverse_N, members_K = np.unique(c, return_inverse=True, return_counts=True)
    by_value = np.argsort(inverse_N, kind="stable")  # sample positions grouped by value, ascending
    starts_K = np.concatenate([[0], np.cumsum(members_K)[:-1]])
    top = values_K.size - 1
    picked = [int(by_value[starts_K[top] + rng.integers(members_K[top])])]
    dist_K = np.abs(values_K - values_K[top])
    mass_K = members_K.astype(np.float64)
    while len(picked) < n:
        weight_K = mass_K * (values_K * dist_K) ** 2
        cdf_K = np.cumsum(weight_K)
        total = cdf_K[-1]
        if not total > 0:
            break
        k = min(int(np.searchsorted(cdf_K, rng.random() * total, side="right")), top)
        while weight_K[k] == 0:  # a zero-weight value can sit at the searched position only by rounding
            k -= 1
        picked.append(int(by_value[starts_K[k] + rng.integers(members_K[k])]))
        np.minimum(dist_K, np.abs(values_K - values_K[k]), out=dist_K)
    chosen = np.asarray(picked, dtype=np.int64)
    if chosen.size < n:  # the fill: the largest counts among the rest
        rest = c.copy()
        rest[chosen] = -np.inf
        chosen = np.concatenate([chosen, _top_k(rest, n - chosen.size, rng, None)])
    return chosen


# --------------------------------------------------------------------------------------------- GauSS

#: Why :func:`gauss_select` did not sample from the high component (``None`` when it did).
GAUSS_FALLBACKS = {
    "all-equal": "fewer than 2 distinct counts: no mixture to fit; n drawn uniformly at random",
    "degenerate-fit": "the fitting subsample holds a single value; top-n by count",
    "too-few-high": "the high-mean component has at most n members; top-n by count",
    "degenerate-responsibilities": "responsibilities are NaN or sum to zero; top-n by count",
}


@dataclass(frozen=True)
class GaussInfo:
    """What :func:`gauss_select` fitted and did, for reports.

    Components are ordered (low-mean, high-mean). Fields are NaN when no mixture was fitted.

    Attributes:
        means: component means.
        variances: component variances.
        weights: mixing weights (sum to 1).
        n_high: pool samples whose responsibility of the high component exceeds 0.5.
        n_fit: values the mixture was fitted on (the pool, or a seeded subsample of it).
        fallback: ``None`` when the selection sampled from the high component, else a key of
            :data:`GAUSS_FALLBACKS`.
    """

    means: tuple[float, float]
    variances: tuple[float, float]
    weights: tuple[float, float]
    n_high: int
    n_fit: int
    fallback: str | None

    def component_densities(self, x: np.ndarray) -> np.ndarray:
        """Weighted component densities ``w_k N(x | mu_k, var_k)``: float64 ``[2, len(x)]`` (for plots)."""
        x = np.asarray(x, dtype=np.float64)
        out = np.full((2, x.size), np.nan)
        for k in range(2):
            var = self.variances[k]
            if np.isfinite(var) and var > 0:
                out[k] = (
                    self.weights[k]
                    * np.exp(-((x - self.means[k]) ** 2) / (2 * var))
                    / math.sqrt(2 * math.pi * var)
                )
        return out


_NAN2 = (math.nan, math.nan)


def _high_responsibility(
    x: np.ndarray, means: np.ndarray, variances: np.ndarray, weights: np.ndarray
) -> np.ndarray:
    """Responsibility of the high-mean component (index 1) for every ``x``: float64 ``[N]``, vectorised."""
    with np.errstate(divide="ignore", invalid="ignore"):
        log_p = (
            np.log(weights)[:, None]
            - 0.5 * np.log(2 * np.pi * variances)[:, None]
            - (x[None, :] - means[:, None]) ** 2 / (2 * variances[:, None])
        )
        return expit(log_p[1] - log_p[0])


def _select_from_mixture(
    x: np.ndarray,
    n: int,
    rng: np.random.Generator,
    means: np.ndarray,
    variances: np.ndarray,
    weights: np.ndarray,
    n_fit: int,
    rank_values: np.ndarray | None = None,
) -> tuple[np.ndarray, GaussInfo]:
    """Steps 2-4 of GauSS for a fitted mixture (components ordered low, high); the top-n fallbacks rank
    ``rank_values`` (default ``x``; the original values when ``x`` was rescaled for the fit)."""
    resp_high = _high_responsibility(x, means, variances, weights)
    members = np.flatnonzero(resp_high > 0.5)
    fitted = functools.partial(
        GaussInfo,
        means=(float(means[0]), float(means[1])),
        variances=(float(variances[0]), float(variances[1])),
        weights=(float(weights[0]), float(weights[1])),
        n_high=int(members.size),
        n_fit=n_fit,
    )
    p = resp_high[members]
    fallback = None
    if np.isnan(resp_high).any() or not np.all(np.isfinite(p)) or (members.size and not p.sum() > 0):
        fallback = "degenerate-responsibilities"
    elif members.size <= n:  # the authors' test is strict (`if length > n: sample`), so exactly n -> top-n
        fallback = "too-few-high"
    if fallback is not None:
        info = fitted(fallback=fallback)
        logger.debug("gauss_select: %s (%s)", GAUSS_FALLBACKS[fallback], info)
        ranked = x if rank_values is None else rank_values
        return _top_k(ranked, n, rng, None), info
    picked = members[_gumbel_top_k(np.log(p), n, rng)]
    return picked, fitted(fallback=None)


def gauss_select(
    counts: np.ndarray | torch.Tensor,
    n: int,
    *,
    seed: int,
    return_info: bool = False,
    max_fit_samples: int = 20_000,
) -> np.ndarray | tuple[np.ndarray, GaussInfo]:
    """The GauSS selector (Gaussian switch sampling).

    1. Fit a 2-component 1-D Gaussian mixture to the counts (scikit-learn ``GaussianMixture``,
       ``random_state`` from ``seed``). Pools larger than ``max_fit_samples`` are fitted on a seeded
       subsample of that size without replacement; responsibilities are then computed for every sample in one
       vectorised pass with the fitted parameters.
    2. Keep the members of the high-mean component: responsibility of the high component > 0.5.
    3. If more than ``n`` members remain, draw ``n`` of them without replacement with probability
       proportional to their responsibility (successive sampling, implemented as Gumbel-top-k).
    4. Otherwise take the top-``n`` by count (:func:`select_top_k`, ties random). As in the authors' code
       (``gmmss.py``: ``if length > n``) this includes exactly ``n`` members: the top-n by count, not the
       members. The two differ only when the members are not the ``n`` highest counts (a wide low
       component can own the far tail) and in the order of the picks.

    Guards (recorded in ``GaussInfo.fallback``): fewer than 2 distinct counts (all counts equal) -> ``n``
    drawn uniformly at random, since no sample is distinguishable; a single value in the fitting subsample ->
    top-n; NaN or zero responsibilities -> top-n; at most ``n`` members -> top-n.

    Args:
        counts: ``[N]`` finite counts (integer switch counts or any real score), numpy or torch.
        n: ``1 <= n <= N``.
        seed: seeds the subsample, the mixture's initialisation and the draw.
        return_info: also return a :class:`GaussInfo`.
        max_fit_samples: largest number of values the mixture is fitted on.

    Returns:
        int64 ``[n]`` positions in draw order, and the :class:`GaussInfo` when ``return_info``.
    """
    x = as_numpy_1d(counts, "counts")
    n = check_n(n, x.size)
    seed = check_seed(seed)
    if max_fit_samples < 2:
        raise ConfigError(f"max_fit_samples must be >= 2, got {max_fit_samples}")
    if not np.all(np.isfinite(x)):
        raise InputError(f"counts must be finite; found {int((~np.isfinite(x)).sum())} NaN or inf values")
    rng = np.random.default_rng(seed)
    if x.min() == x.max():
        info = GaussInfo(_NAN2, _NAN2, _NAN2, n_high=0, n_fit=0, fallback="all-equal")
        logger.debug("gauss_select: %s", GAUSS_FALLBACKS["all-equal"])
        picked = rng.choice(x.size, size=n, replace=False).astype(np.int64, copy=False)
        return (picked, info) if return_info else picked
    fit_values = (
        x if x.size <= max_fit_samples else x[rng.choice(x.size, size=max_fit_samples, replace=False)]
    )
    if fit_values.min() == fit_values.max():
        info = GaussInfo(_NAN2, _NAN2, _NAN2, n_high=0, n_fit=fit_values.size, fallback="degenerate-fit")
        picked = _top_k(x, n, rng, None)
        return (picked, info) if return_info else picked
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture

    # Values so large that the mixture's squared distances would overflow (or so close together that they
    # vanish under its covariance floor) are fitted on an affine rescaling to [0, 1]: membership is decided
    # in those units (it does not depend on the units), the top-n fallbacks rank the original values, and
    # the reported means and variances are mapped back.
    units = _mixture_units(x)
    x_fit = x if units is None else _to_units(x, *units)
    if units is not None:
        logger.debug("gauss_select: values rescaled to [0, 1] for the mixture fit (min %g, max %g)", *units)
        fit_values = _to_units(fit_values, *units)
    gmm = GaussianMixture(n_components=2, random_state=seed % 2**32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        gmm.fit(fit_values[:, None])
    for warning in caught:
        logger.info("gauss_select: mixture fit warning: %s", warning.message)
    means = gmm.means_.reshape(2)
    order = np.argsort(means, kind="stable")
    picked, info = _select_from_mixture(
        x_fit,
        n,
        rng,
        means[order],
        np.asarray(gmm.covariances_, dtype=np.float64).reshape(2)[order],
        np.asarray(gmm.weights_, dtype=np.float64)[order],
        n_fit=fit_values.size,
        rank_values=x,
    )
    if units is not None:
        lo, hi = units
        half = hi / 2 - lo / 2
        with np.errstate(over="ignore"):  # a variance of the original units may overflow to inf
            info = replace(
                info,
                means=(
                    lo + half * info.means[0] + half * info.means[0],
                    lo + half * info.means[1] + half * info.means[1],
                ),
                variances=(
                    float(np.float64(4 * half) * half * info.variances[0]),
                    float(np.float64(4 * half) * half * info.variances[1]),
                ),
            )
    return (picked, info) if return_info else picked


#: Beyond these magnitudes :func:`gauss_select` fits the mixture on values rescaled to [0, 1]: squares of
#: larger values overflow float64, and a smaller spread vanishes under the mixture's covariance floor.
_MIXTURE_MAX_ABS = 1e100
_MIXTURE_MIN_SPREAD = 1e-100


def _mixture_units(x: np.ndarray) -> tuple[float, float] | None:
    """``(min, max)`` of ``x`` when the mixture must be fitted on rescaled values, else ``None``."""
    lo, hi = float(x.min()), float(x.max())
    if max(abs(lo), abs(hi)) <= _MIXTURE_MAX_ABS and hi / 2 - lo / 2 >= _MIXTURE_MIN_SPREAD / 2:
        return None
    return lo, hi


def _to_units(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``(values - lo) / (hi - lo)`` in [0, 1], computed in halves so that nothing overflows near 1.8e308."""
    half = hi / 2 - lo / 2
    return np.clip((values / 2 - lo / 2) / half, 0.0, 1.0)


# --------------------------------------------------------------------------------------------- geometry


def _sq_norms(x_N_D: torch.Tensor) -> torch.Tensor:
    """Squared row norms ``[N]`` without an ``N × D`` temporary (a reduction, not ``(x * x).sum``)."""
    return torch.linalg.vector_norm(x_N_D, dim=1).square_()


def min_distances(x_N_D: torch.Tensor, centers_L_D: torch.Tensor) -> torch.Tensor:
    """Euclidean distance of every row of ``x`` to its nearest centre: ``[N]``, in blocks of bounded size.

    Never holds more than about ``CHUNK_ELEMENTS / 4`` (4M) distances at once.
    """
    n_rows, n_centers = x_N_D.shape[0], centers_L_D.shape[0]
    center_block = min(n_centers, 4096)
    row_block = max(1, (CHUNK_ELEMENTS // 4) // center_block)  # ~16 MiB per float32 temporary
    out = torch.empty(n_rows, dtype=x_N_D.dtype, device=x_N_D.device)
    for r0 in range(0, n_rows, row_block):
        rows = x_N_D[r0 : r0 + row_block]
        best = torch.full((rows.shape[0],), math.inf, dtype=x_N_D.dtype, device=x_N_D.device)
        for c0 in range(0, n_centers, center_block):
            block = torch.cdist(
                rows, centers_L_D[c0 : c0 + center_block], compute_mode="use_mm_for_euclid_dist"
            )
            best = torch.minimum(best, block.min(dim=1).values)
        out[r0 : r0 + row_block] = best
    return out


def k_center_greedy(
    features_N_D: torch.Tensor,
    n: int,
    *,
    seed: int,
    centers_L_D: torch.Tensor | None = None,
    return_scores: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Greedy k-center (Sener & Savarese 2018): repeatedly take the point farthest from all centres.

    Centres are ``centers_L_D`` (the labeled set) plus every point taken so far. State is the squared
    distance of each point to its nearest centre, ``[N]``: initialised against ``centers_L_D`` in bounded
    blocks (``torch.cdist`` on chunks, never ``N × L`` at once for large inputs) and updated with one
    matrix-vector product per step. With no centres the first point is drawn uniformly at random (seeded);
    otherwise the result does not depend on ``seed``. Exact ties go to the lowest position.

    Args:
        features_N_D: float ``[N, D]`` pool features, any device.
        n: ``1 <= n <= N``.
        seed: seeds the first point when there are no centres.
        centers_L_D: float ``[L, D]`` fixed centres (``L`` may be 0), or ``None``.
        return_scores: also return the distance of each chosen point to its nearest centre when chosen
            (float64 ``[n]``; NaN for a randomly drawn first point).

    Returns:
        int64 ``[n]`` positions in selection order (and the distances when ``return_scores``).
    """
    if features_N_D.ndim != 2:
        raise ShapeError(f"features must be [N, D], got shape {tuple(features_N_D.shape)}")
    x = working_float(features_N_D)
    n_rows = x.shape[0]
    n = check_n(n, n_rows)
    seed = check_seed(seed)
    device, dtype = x.device, x.dtype
    sq_norm = _sq_norms(x)
    chosen = torch.empty(n, dtype=torch.long, device=device)
    dist_at = torch.empty(n, dtype=dtype, device=device)

    def nearest_update(min_d2: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Fold the squared distances to centre ``idx`` into ``min_d2`` (in place, 4 passes over N)."""
        d2 = torch.addmv(sq_norm, x, x.index_select(0, idx).squeeze(0), alpha=-2.0)
        d2.add_(sq_norm.index_select(0, idx)).clamp_min_(0.0)
        torch.minimum(min_d2, d2, out=min_d2)
        return min_d2.index_fill_(0, idx, -math.inf)  # chosen points are never chosen again

    start = 0
    if centers_L_D is not None and centers_L_D.shape[0] > 0:
        if centers_L_D.ndim != 2 or centers_L_D.shape[1] != x.shape[1]:
            raise ShapeError(
                f"centres must be [L, {x.shape[1]}] like the features, got shape {tuple(centers_L_D.shape)}"
            )
        min_d2 = min_distances(x, centers_L_D.to(device=device, dtype=dtype)).square_()
    else:
        first = int(np.random.default_rng(seed).integers(n_rows))
        idx = torch.tensor([first], device=device)
        chosen[0] = first
        dist_at[0] = math.nan
        min_d2 = nearest_update(torch.full((n_rows,), math.inf, dtype=dtype, device=device), idx)
        start = 1
    for t in range(start, n):
        idx = torch.argmax(min_d2).view(1)
        chosen[t : t + 1] = idx
        dist_at[t : t + 1] = min_d2.index_select(0, idx).sqrt()
        min_d2 = nearest_update(min_d2, idx)
    indices = chosen.cpu().numpy().astype(np.int64, copy=False)
    if return_scores:
        return indices, dist_at.to(device="cpu", dtype=torch.float64).numpy()
    return indices


def _d2_sampling(
    n_rows: int,
    n: int,
    sq_dist_to: Callable[[torch.Tensor], torch.Tensor],
    first: torch.Tensor,
    first_score: torch.Tensor,
    generator: torch.Generator,
    device: torch.device,
    dtype: torch.dtype,
) -> tuple[np.ndarray, np.ndarray]:
    """k-means++ seeding given a squared-distance oracle ``sq_dist_to(idx [1]) -> [N]``.

    Step ``t`` draws a point with probability proportional to its squared distance to the nearest chosen
    centre (inverse CDF on a float64 cumulative sum, one host-drawn uniform per step). Chosen points get
    weight 0 and are never drawn again; if every remaining point coincides with a centre, the draw is
    uniform over the remaining points. Returns positions and the distance (not squared) of each point when
    drawn.
    """
    chosen = torch.empty(n, dtype=torch.long, device=device)
    scores = torch.empty(n, dtype=dtype, device=device)
    chosen[0:1] = first
    scores[0:1] = first_score
    # float64 state: min squared distance to the chosen centres (0 for chosen points) and an availability
    # mask; weights = min_d2 + 1e-200 * available is the D² distribution whenever any distance is positive
    # (the floor is below float64 resolution of any positive total) and uniform over the remaining points
    # when all of them coincide with centres.
    available = torch.ones(n_rows, dtype=torch.float64, device=device).index_fill_(0, first, 0.0)
    min_d2 = sq_dist_to(first).to(torch.float64).clamp_min_(0.0).index_fill_(0, first, 0.0)
    uniforms = uniform_draws(generator, max(n - 1, 0), device)
    zero = torch.zeros((), dtype=torch.float64, device=device)
    for t in range(1, n):
        cdf = torch.cumsum(torch.add(min_d2, available, alpha=1e-200), dim=0)
        total = cdf[-1]
        # strictly below the total, so the first cdf entry above the target has a positive weight
        target = torch.minimum(uniforms[t - 1] * total, torch.nextafter(total, zero)).view(1)
        idx = torch.searchsorted(cdf, target, right=True)
        chosen[t : t + 1] = idx
        scores[t : t + 1] = min_d2.index_select(0, idx).sqrt()
        available.index_fill_(0, idx, 0.0)
        torch.minimum(min_d2, sq_dist_to(idx).clamp_min_(0.0), out=min_d2)
        min_d2.index_fill_(0, idx, 0.0)
    return (
        chosen.cpu().numpy().astype(np.int64, copy=False),
        scores.to(device="cpu", dtype=torch.float64).numpy(),
    )


def kmeans_pp_select(
    features_N_D: torch.Tensor,
    n: int,
    *,
    seed: int,
    first: Literal["random", "max-norm"] = "random",
    return_scores: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """k-means++ seeding (Arthur & Vassilvitskii 2007) on Euclidean features, without replacement.

    The first centre is drawn uniformly at random (``first="random"``) or is the row of largest norm
    (``"max-norm"``); each next one with probability proportional to the squared distance to its nearest
    chosen centre. ``O(N)`` state, one matrix-vector product per step; seeded by a ``torch.Generator``.

    Args:
        features_N_D: float ``[N, D]``, any device.
        n: ``1 <= n <= N``.
        seed: seed of the draws.
        first: how the first centre is chosen.
        return_scores: also return float64 ``[n]``: each point's distance to its nearest centre when drawn
            (NaN for a random first centre, its norm for a max-norm first centre).

    Returns:
        int64 ``[n]`` positions in draw order (and the scores when ``return_scores``).
    """
    if features_N_D.ndim != 2:
        raise ShapeError(f"features must be [N, D], got shape {tuple(features_N_D.shape)}")
    if first not in ("random", "max-norm"):
        raise ConfigError(f"first must be 'random' or 'max-norm', got {first!r}")
    x = working_float(features_N_D)
    n = check_n(n, x.shape[0])
    generator = torch.Generator().manual_seed(check_seed(seed))
    sq_norm = _sq_norms(x)

    def sq_dist_to(idx: torch.Tensor) -> torch.Tensor:
        d2 = torch.addmv(sq_norm, x, x.index_select(0, idx).squeeze(0), alpha=-2.0)
        return d2.add_(sq_norm.index_select(0, idx))

    if first == "random":
        first_idx = torch.randint(x.shape[0], (1,), generator=generator).to(x.device)
        first_score = torch.full((1,), math.nan, dtype=x.dtype, device=x.device)
    else:
        first_idx = torch.argmax(sq_norm).view(1)
        first_score = sq_norm.index_select(0, first_idx).sqrt()
    indices, scores = _d2_sampling(
        x.shape[0], n, sq_dist_to, first_idx, first_score, generator, x.device, x.dtype
    )
    return (indices, scores) if return_scores else indices


def badge_factors(probs_N_C: torch.Tensor, embeddings_N_D: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``a = onehot(argmax p) - p`` (``[N, C]``) and ``h`` (``[N, D]``) in a common float dtype."""
    if probs_N_C.ndim != 2 or embeddings_N_D.ndim != 2 or probs_N_C.shape[0] != embeddings_N_D.shape[0]:
        raise ShapeError(
            "BADGE needs probs [N, C] and embeddings [N, D] with the same N, got "
            f"{tuple(probs_N_C.shape)} and {tuple(embeddings_N_D.shape)}"
        )
    dtype = torch.promote_types(working_float(probs_N_C).dtype, working_float(embeddings_N_D).dtype)
    h = embeddings_N_D.to(dtype)
    a = probs_N_C.to(device=h.device, dtype=dtype).neg()
    a.scatter_add_(1, probs_N_C.argmax(dim=1, keepdim=True).to(h.device), torch.ones_like(a[:, :1]))
    return a, h


def badge_sq_distances(probs_N_C: torch.Tensor, embeddings_N_D: torch.Tensor, index: int) -> torch.Tensor:
    """Squared distances in BADGE gradient-embedding space from every pool row to row ``index``: ``[N]``.

    With ``g_i = a_i ⊗ h_i`` and ``a_i = onehot(argmax p_i) - p_i``, ``<g_i, g_j> = <a_i, a_j><h_i, h_j>``, so
    ``||g_i - g_j||² = ||a_i||²||h_i||² + ||a_j||²||h_j||² - 2<a_i, a_j><h_i, h_j>``: two matrix-vector
    products, no ``N × (C·D)`` matrix. Clamped at 0 against rounding.
    """
    a, h = badge_factors(probs_N_C, embeddings_N_D)
    g2 = _sq_norms(a) * _sq_norms(h)
    j = torch.tensor([index], device=h.device)
    inner = torch.mv(a, a.index_select(0, j).squeeze(0)) * torch.mv(h, h.index_select(0, j).squeeze(0))
    return (g2 + g2.index_select(0, j) - 2.0 * inner).clamp_min_(0.0)


def badge_select(
    probs_N_C: torch.Tensor,
    embeddings_N_D: torch.Tensor,
    n: int,
    *,
    seed: int,
    return_scores: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """BADGE (Ash et al. 2020): k-means++ seeding on gradient embeddings ``g_i = (onehot(ŷ_i) - p_i) ⊗ h_i``.

    The ``N × (C·D)`` gradient-embedding matrix is never formed: squared distances to a chosen centre come
    from the factorisation in :func:`badge_sq_distances` (memory ``O(N·(C + D))``, i.e. the inputs). As in
    the authors' code, the first centre is the point of largest gradient norm ``||g_i|| = ||a_i||·||h_i||``
    (deterministic); every next one is D²-sampled with a ``torch.Generator`` seeded by ``seed``.

    Args:
        probs_N_C: float ``[N, C]`` softmax probabilities.
        embeddings_N_D: float ``[N, D]`` penultimate features.
        n: ``1 <= n <= N``.
        seed: seed of the D² draws.
        return_scores: also return float64 ``[n]``: the gradient-space distance of each point to its nearest
            chosen centre when drawn (the first centre's gradient norm for the first).

    Returns:
        int64 ``[n]`` positions in draw order (and the scores when ``return_scores``).
    """
    a, h = badge_factors(probs_N_C, embeddings_N_D)
    n = check_n(n, h.shape[0])
    generator = torch.Generator().manual_seed(check_seed(seed))
    g2 = _sq_norms(a) * _sq_norms(h)

    def sq_dist_to(idx: torch.Tensor) -> torch.Tensor:
        aa = torch.mv(a, a.index_select(0, idx).squeeze(0))
        hh = torch.mv(h, h.index_select(0, idx).squeeze(0))
        return torch.addcmul(g2, aa, hh, value=-2.0).add_(g2.index_select(0, idx))

    first_idx = torch.argmax(g2).view(1)
    indices, scores = _d2_sampling(
        h.shape[0],
        n,
        sq_dist_to,
        first_idx,
        g2.index_select(0, first_idx).sqrt(),
        generator,
        h.device,
        h.dtype,
    )
    return (indices, scores) if return_scores else indices
