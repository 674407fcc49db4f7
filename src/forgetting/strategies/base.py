"""The strategy contract: a strategy declares the inputs it needs, then scores and selects.

Shapes follow the suffix convention: ``probs_N_C`` is ``[N, C]`` for N pool samples and C classes,
``mc_probs_K_N_C`` holds K MC-dropout passes.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from forgetting.exceptions import MissingInputError


class Input(enum.StrEnum):
    """What a strategy may ask the loop to compute. The loop computes only what is declared."""

    PROBS = "probs"  # softmax of the pool: probs_N_C
    MC_PROBS = "mc_probs"  # K MC-dropout softmax passes: mc_probs_K_N_C
    # penultimate features of the pool and the labeled set: embeddings_N_D, labeled_embeddings_L_D
    EMBEDDINGS = "embeddings"
    DYNAMICS = "dynamics"  # switch counts on the pool from training-time tracking: switches_N
    POOL_LABELS = "pool_labels"  # true pool labels (oracle analysis only): pool_labels_N and forgetting_N
    # dataset indices of the pool rows: pool_indices_N (precomputed per-sample scores read by index)
    POOL_INDICES = "pool_indices"


#: The inputs that need the round's trained model (one eval-mode pass over the pool).
MODEL_INPUTS: frozenset[Input] = frozenset({Input.PROBS, Input.MC_PROBS, Input.EMBEDDINGS})


class SelectionKind(enum.StrEnum):
    """How a strategy's ``select`` uses its inputs (declared as :attr:`Strategy.selection`)."""

    #: ``select`` ranks or samples the one-dimensional output of ``score`` only. A task may therefore hand
    #: it any per-sample score in ``StrategyInputs.scores_N`` instead (for segmentation: the strategy's own
    #: pixel scores, reduced to one per section).
    SCORES = "scores"
    #: ``select`` needs the full inputs (a greedy, joint or diversity selection over embeddings or MC
    #: samples, or a tie-break on a second input).
    JOINT = "joint"


@dataclass
class StrategyInputs:
    """Everything a strategy may read. Fields not declared by the strategy may be ``None``.

    All tensors are aligned with the pool: row i describes pool position i. Tensors may live on any device.

    Attributes:
        n_pool: N, the pool size.
        probs_N_C: float32 ``[N, C]`` softmax probabilities.
        mc_probs_K_N_C: float32 ``[K, N, C]`` MC-dropout softmax probabilities.
        embeddings_N_D: float32 ``[N, D]`` penultimate features of the pool.
        labeled_embeddings_L_D: float32 ``[L, D]`` penultimate features of the labeled set.
        switches_N: integer ``[N]`` switch counts (or any precomputed count-like score).
        forgetting_N: integer ``[N]`` forgetting counts, from tracking with the pool's true labels.
        never_learned_N: bool ``[N]`` pool samples never predicted correctly (oracle tracking only).
        pool_labels_N: int64 ``[N]`` true labels (oracle analysis only).
        pool_indices_N: int64 ``[N]`` the dataset (training-split) index of each pool row.
        scores_N: float ``[N]`` per-sample scores computed outside the strategy, which a strategy whose
            :attr:`~Strategy.selection` is ``"scores"`` ranks instead of calling its ``score``: for
            segmentation, the strategy's own pixel scores reduced to one score per section (see
            :mod:`forgetting.segmentation.active`).
    """

    n_pool: int
    probs_N_C: torch.Tensor | None = None
    mc_probs_K_N_C: torch.Tensor | None = None
    embeddings_N_D: torch.Tensor | None = None
    labeled_embeddings_L_D: torch.Tensor | None = None
    switches_N: torch.Tensor | None = None
    forgetting_N: torch.Tensor | None = None
    never_learned_N: torch.Tensor | None = None
    pool_labels_N: torch.Tensor | None = None
    pool_indices_N: torch.Tensor | None = None
    scores_N: torch.Tensor | None = None

    def require(self, name: str) -> torch.Tensor:
        """The field ``name``, or a :class:`MissingInputError` naming it."""
        value = getattr(self, name)
        if value is None:
            raise MissingInputError(f"strategy input {name!r} was not computed; declare it in `requires`")
        return value


@dataclass
class Selection:
    """What a strategy picked.

    Attributes:
        indices: int64 ``[n]`` unique positions into the pool (0..N-1), in selection order.
        scores: float64 ``[n]`` the score of each selected sample; NaN where the strategy has none.
    """

    indices: np.ndarray
    scores: np.ndarray


class Strategy(ABC):
    """Base class: subclasses set ``name`` and ``requires`` and implement :meth:`select`.

    A strategy declares what it can work with, and the loop's task matches that with what it can produce
    (nothing is probed):

    * ``requires``: the inputs the loop must compute (:class:`Input`);
    * ``selection``: ``"scores"`` when ``select`` only ranks or samples the output of ``score`` (so a task may
      hand it any per-sample score), ``"joint"`` when it needs the full inputs;
    * ``elementwise``: whether ``score`` scores each row from that row's inputs alone (entropy of one
      softmax, one switch count), so it also applies to each pixel of a section, before a reduction.
    """

    name: ClassVar[str]
    requires: ClassVar[frozenset[Input]] = frozenset()
    selection: ClassVar[SelectionKind] = SelectionKind.JOINT
    elementwise: ClassVar[bool] = False

    @abstractmethod
    def select(self, inputs: StrategyInputs, n: int, *, seed: int) -> Selection:
        """Pick ``n`` distinct pool positions. ``n`` must satisfy ``1 <= n <= inputs.n_pool``."""

    def fitted(self) -> dict[str, np.ndarray]:
        """Small arrays describing what the last :meth:`select` fitted, stored with the round (so a report
        shows the fit that chose the queries, not a refit); empty for strategies that fit nothing."""
        return {}
