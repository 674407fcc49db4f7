"""Bayesian strategies on MC-dropout samples: BALD and BatchBALD.

Both read ``mc_probs_K_N_C`` (K stochastic forward passes) and run on its device. Entropies are in nats and
computed in float64.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from forgetting.exceptions import ShapeError
from forgetting.strategies.base import Input, Selection, SelectionKind, StrategyInputs
from forgetting.strategies.common import (
    CHUNK_ELEMENTS,
    check_n,
    check_rows,
    check_seed,
    positive_int_option,
    uniform_draws,
)
from forgetting.strategies.scored import ScoredStrategy
from forgetting.strategies.selectors import select_top_k

__all__ = ["BaldStrategy", "BatchBaldStrategy", "bald_scores", "batchbald_select"]


def _check_mc(mc_probs_K_N_C: torch.Tensor) -> torch.Tensor:
    if mc_probs_K_N_C.ndim != 3:
        raise ShapeError(f"MC probabilities must be [K, N, C], got shape {tuple(mc_probs_K_N_C.shape)}")
    return mc_probs_K_N_C


def bald_scores(mc_probs_K_N_C: torch.Tensor, *, chunk_size: int | None = None) -> torch.Tensor:
    """BALD mutual information ``I(y; θ) = H[mean_k p_k] - mean_k H[p_k]`` (Houlsby et al. 2011).

    Computed in float64 over pool chunks so the temporaries stay ``O(K·chunk·C)``.

    Args:
        mc_probs_K_N_C: float ``[K, N, C]`` softmax probabilities of K MC-dropout passes.
        chunk_size: pool rows per chunk (default: about 2**20 elements per chunk).

    Returns:
        float64 ``[N]`` on the input's device, ``>= 0`` up to rounding.
    """
    mc = _check_mc(mc_probs_K_N_C)
    k, n_rows, c = mc.shape
    block = chunk_size or max(1, (CHUNK_ELEMENTS // 16) // max(1, k * c))
    out = torch.empty(n_rows, dtype=torch.float64, device=mc.device)
    for start in range(0, n_rows, block):
        p = mc[:, start : start + block].to(torch.float64)
        mean = p.mean(dim=0)
        entropy_of_mean = -torch.special.xlogy(mean, mean).sum(dim=-1)
        mean_entropy = -torch.special.xlogy(p, p).sum(dim=-1).mean(dim=0)
        out[start : start + block] = entropy_of_mean - mean_entropy
    return out


def _categorical(probs_R_M: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One draw per row of ``probs_R_M`` (rows need not be normalised): long ``[R]``, inverse-CDF sampling."""
    cdf = torch.cumsum(probs_R_M, dim=1)
    u = uniform_draws(generator, probs_R_M.shape[0], probs_R_M.device) * cdf[:, -1]
    idx = torch.searchsorted(cdf, u.unsqueeze(1).contiguous(), right=True).squeeze(1)
    return idx.clamp_max_(probs_R_M.shape[1] - 1)


def batchbald_select(
    mc_probs_K_N_C: torch.Tensor,
    n: int,
    *,
    seed: int,
    num_samples: int = 1000,
    max_candidates: int = 2000,
    chunk_size: int | None = None,
    return_scores: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """BatchBALD (Kirsch et al. 2019): greedily grow the batch that maximises the joint mutual information.

    Step ``t`` adds the candidate ``c`` maximising ``I(y_1..y_{t-1}, y_c; θ) = H(y_1..y_{t-1}, y_c) -
    Σ_i E_θ H(y_i | θ)``. The joint entropy is taken over class configurations ``m`` of the batch so far,
    with ``P[k, m] = Π_i p_k(y_i = m_i)``:

    ``H = -Σ_m w_m Σ_j q(j | m) log p(m, j)``, ``p(m, j) = mean_k P[k, m] p_k(c, j)``,
    ``q(j | m) = Σ_k P[k, m] p_k(c, j) / Σ_k P[k, m]``.

    While the number of configurations ``C^b`` is at most ``num_samples`` they are enumerated exactly
    (``w_m = p(m)``). Beyond that, ``num_samples`` configurations are drawn once from the joint (a pass
    ``k_s`` uniformly, then a configuration from ``P[k_s, ·]``) with a ``torch.Generator`` seeded by
    ``seed``, each extended by a draw ``y ~ p_{k_s}(new)`` whenever a point joins the batch
    (``w_m = 1/num_samples``). Columns of ``P`` are rescaled to max 1 each step with the log-scale kept
    aside, so long batches do not underflow.

    Candidates are the top ``max_candidates`` pool points by BALD score (at least ``n``); candidates are
    scored in chunks, so memory is ``O(chunk · M · C)`` float64 for ``M`` configurations plus
    ``K · max_candidates · C`` for the candidates' probabilities, independent of the pool size.

    Args:
        mc_probs_K_N_C: float ``[K, N, C]`` MC-dropout softmax probabilities.
        n: batch size, ``1 <= n <= N``.
        seed: seeds the BALD tie-break and the configuration sampling.
        num_samples: ``M``, the configuration budget (exact below it, sampled above).
        max_candidates: BALD pre-filter size.
        chunk_size: candidates scored per chunk (default from a ~4M-element budget).
        return_scores: also return float64 ``[n]``: the estimated joint mutual information of the batch up to
            and including each point (non-decreasing up to sampling noise; the first equals its BALD score).

    Returns:
        int64 ``[n]`` pool positions in selection order (and the scores when ``return_scores``).
    """
    mc = _check_mc(mc_probs_K_N_C)
    k, n_rows, c = mc.shape
    n = check_n(n, n_rows)
    seed = check_seed(seed)
    num_samples = positive_int_option(num_samples, "num_samples")
    max_candidates = positive_int_option(max_candidates, "max_candidates")
    device = mc.device
    n_cand = min(n_rows, max(max_candidates, n))
    candidates = select_top_k(bald_scores(mc), n_cand, seed=seed)
    p = mc.index_select(1, torch.from_numpy(candidates).to(device)).to(torch.float64)  # K × Nc × C
    cond_entropy = -torch.special.xlogy(p, p).sum(dim=-1).mean(dim=0)  # Nc
    generator = torch.Generator().manual_seed(seed)
    log_k = math.log(k)

    configs = torch.ones(k, 1, dtype=torch.float64, device=device)  # P[k, m], columns rescaled
    log_scale = torch.zeros(1, dtype=torch.float64, device=device)  # true P = configs * exp(log_scale)
    log_weight = torch.zeros(1, dtype=torch.float64, device=device)  # exact mode: log p(m)
    sample_pass: torch.Tensor | None = None  # sampled mode: pass k_s of each configuration
    available = torch.ones(n_cand, dtype=torch.bool, device=device)
    chosen = torch.empty(n, dtype=torch.long, device=device)
    joint_mi = torch.empty(n, dtype=torch.float64, device=device)
    cond_sum = torch.zeros((), dtype=torch.float64, device=device)
    for t in range(n):
        m = configs.shape[1]
        weight = (
            torch.softmax(log_weight, dim=0) if sample_pass is None else torch.full_like(log_scale, 1.0 / m)
        )
        col = configs.sum(dim=0)
        coef = weight / col  # w_m / Σ_k P[k, m]
        const = (weight * log_scale).sum()
        block = chunk_size or max(1, (CHUNK_ELEMENTS // 4) // (m * c))
        joint_entropy = torch.empty(n_cand, dtype=torch.float64, device=device)
        for start in range(0, n_cand, block):
            pc = p[:, start : start + block]
            b = pc.shape[1]
            joint = (configs.T @ pc.reshape(k, b * c)).view(m, b, c)  # Σ_k P[k, m] p_k(c, j)
            # Σ_j joint log(joint / K) = Σ_j joint log joint - log(K) Σ_j joint  (M × b)
            inner = torch.special.xlogy(joint, joint).sum(dim=-1) - log_k * joint.sum(dim=-1)
            joint_entropy[start : start + b] = -(coef @ inner) - const
        scores = torch.where(available, joint_entropy - cond_entropy - cond_sum, -math.inf)
        best = torch.argmax(scores).view(1)
        chosen[t : t + 1] = best
        joint_mi[t : t + 1] = scores.index_select(0, best)
        cond_sum = cond_sum + cond_entropy.index_select(0, best).squeeze(0)
        available.index_fill_(0, best, False)
        if t == n - 1:
            break
        p_best = p.index_select(1, best).squeeze(1)  # K × C
        if sample_pass is None and m * c <= num_samples:
            configs = (configs.unsqueeze(2) * p_best.unsqueeze(1)).reshape(k, m * c)
            log_scale = log_scale.repeat_interleave(c)
        else:
            if sample_pass is None:  # switch to sampled configurations, drawn from the exact joint
                sample_pass = torch.randint(k, (num_samples,), generator=generator).to(device)
                per_pass = torch.softmax(torch.log(configs) + log_scale, dim=1)  # K × M: p_k(m)
                picked = _categorical(per_pass.index_select(0, sample_pass), generator)
                configs = configs.index_select(1, picked)
                log_scale = log_scale.index_select(0, picked)
            y = _categorical(p_best.index_select(0, sample_pass), generator)  # S
            configs = configs * p_best.index_select(1, y)
        col_max = configs.amax(dim=0).clamp_min(torch.finfo(torch.float64).tiny)
        configs = configs / col_max
        log_scale = log_scale + torch.log(col_max)
        if sample_pass is None:
            log_weight = torch.log(configs.mean(dim=0)) + log_scale
    positions = candidates[chosen.cpu().numpy()]
    if return_scores:
        return positions, joint_mi.cpu().numpy()
    return positions


def _mc_probs(inputs: StrategyInputs) -> torch.Tensor:
    return check_rows(inputs.require("mc_probs_K_N_C"), "mc_probs_K_N_C", inputs.n_pool, ndim=3, row_dim=1)


class BaldStrategy(ScoredStrategy):
    """``bald``: top-k mutual information between prediction and weights from MC-dropout passes."""

    name = "bald"
    requires = frozenset({Input.MC_PROBS})
    elementwise = True  # one mutual information per row of K softmaxes: applies to each pixel too

    def score(self, inputs: StrategyInputs) -> torch.Tensor:
        """BALD score ``[N]`` (float64)."""
        return bald_scores(_mc_probs(inputs))


class BatchBaldStrategy(ScoredStrategy):
    """``batchbald``: greedy joint mutual information (see :func:`batchbald_select`).

    Options: ``num_samples`` (configuration budget M, default 1000), ``max_candidates`` (BALD pre-filter,
    default 2000), ``chunk_size`` (candidates per chunk, default automatic). ``score`` is the BALD score;
    ``select`` returns the joint mutual information of the growing batch as each point's score.
    """

    name = "batchbald"
    requires = frozenset({Input.MC_PROBS})
    selection = SelectionKind.JOINT  # a greedy joint selection over the MC samples

    def __init__(self, *, num_samples: int = 1000, max_candidates: int = 2000, chunk_size: int | None = None):
        super().__init__()
        self.num_samples = positive_int_option(num_samples, "num_samples")
        self.max_candidates = positive_int_option(max_candidates, "max_candidates")
        self.chunk_size = None if chunk_size is None else positive_int_option(chunk_size, "chunk_size")
        self.options = {
            "num_samples": self.num_samples,
            "max_candidates": self.max_candidates,
            "chunk_size": self.chunk_size,
        }

    def score(self, inputs: StrategyInputs) -> torch.Tensor:
        """BALD score ``[N]`` (float64), the marginal part of the joint criterion."""
        return bald_scores(_mc_probs(inputs))

    def select(self, inputs: StrategyInputs, n: int, *, seed: int) -> Selection:
        """Greedy BatchBALD batch of ``n`` pool positions."""
        n = check_n(n, inputs.n_pool)
        indices, scores = batchbald_select(
            _mc_probs(inputs),
            n,
            seed=seed,
            num_samples=self.num_samples,
            max_candidates=self.max_candidates,
            chunk_size=self.chunk_size,
            return_scores=True,
        )
        return Selection(indices=indices, scores=scores)
