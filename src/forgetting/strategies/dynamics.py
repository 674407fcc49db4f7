"""Count-based strategies on training dynamics: FALSE (``switch``), GauSS (``gauss``), ``sampled-switch``
(the authors' weighted k-means++ rule), ``sampled-count`` (count²-proportional sampling) and the oracle
``forgetting``.

Precomputed counts (option ``scores_file``)
-------------------------------------------
Every count-based strategy accepts ``scores_file``: a ``.npy`` array, or an ``.npz`` with key ``scores``, of
counts over the WHOLE training split, indexed by training-split index (the GauSS paper's "ideal" analysis,
where a model trained on all data ranks the pool). Such a strategy has ``uses_precomputed = True`` and
declares ``requires == {Input.POOL_INDICES}`` (also ``forgetting``, which then needs no pool labels): the loop
does not track the pool and only hands it the training-split indices of the pool rows
(``StrategyInputs.pool_indices_N``); the strategy looks its counts up in the file. Its scores are per sample,
so it is not ``elementwise``. For ``forgetting``, ``+inf`` in the file marks never-learned samples.

``requires``, ``selection`` and ``elementwise`` of these strategies are instance properties (options change
them): always ask an instance.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from forgetting._io import NUMPY_READ_ERRORS, describe_numpy_error
from forgetting.exceptions import ConfigError, InputError
from forgetting.strategies.base import Input, Selection, SelectionKind, StrategyInputs
from forgetting.strategies.common import check_n, check_rows, positive_int_option
from forgetting.strategies.scored import ScoredStrategy
from forgetting.strategies.selectors import (
    GaussInfo,
    gauss_select,
    sampled_count_select,
    sampled_switch_select,
    select_top_k,
)
from forgetting.strategies.uncertainty import entropy_scores

logger = logging.getLogger(__name__)

__all__ = [
    "CountStrategy",
    "ForgettingStrategy",
    "GaussStrategy",
    "SampledCountStrategy",
    "SampledSwitchStrategy",
    "SwitchStrategy",
    "load_scores_file",
]

_SCORES_KEY = "scores"


def load_scores_file(path: str | Path, *, allow_inf: bool = False) -> np.ndarray:
    """Read precomputed per-sample counts: a 1-D ``.npy``, or an ``.npz`` holding key ``"scores"``.

    Args:
        path: the file.
        allow_inf: accept ``+inf`` entries (the ``forgetting`` strategy's never-learned marker).

    Returns:
        float64 ``[T]``, indexed by training-split index.

    Raises:
        ConfigError: the file is missing, has another suffix, lacks the key, is not a 1-D numeric array, or
            holds NaN (or inf where not allowed).
    """
    file = Path(path).expanduser()
    where = f"strategy option 'scores_file' ({file})"
    if not file.is_file():
        raise ConfigError(f"{where}: no such file; give a .npy array or an .npz with key {_SCORES_KEY!r}")
    suffix = file.suffix.lower()
    try:
        if suffix == ".npy":
            raw = np.load(file, allow_pickle=False)
        elif suffix == ".npz":
            with np.load(file, allow_pickle=False) as archive:
                if _SCORES_KEY not in archive.files:
                    raise ConfigError(
                        f"{where}: the archive has no key {_SCORES_KEY!r}; "
                        f"keys found: {sorted(archive.files)}"
                    )
                raw = archive[_SCORES_KEY]
        else:
            raise ConfigError(f"{where}: unsupported suffix {suffix!r}; allowed: '.npy', '.npz'")
    except NUMPY_READ_ERRORS as err:
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(f"{where}: cannot be read as a numpy file: {describe_numpy_error(err)}") from None
    if raw.ndim != 1 or raw.dtype.kind not in "biuf":
        raise ConfigError(
            f"{where}: expected a 1-D numeric array (one count per training sample), "
            f"got dtype {raw.dtype} and shape {raw.shape}"
        )
    scores = raw.astype(np.float64)
    bad = np.isnan(scores) | (np.isinf(scores) & ~(allow_inf & (scores > 0)))
    if bad.any():
        raise ConfigError(
            f"{where}: {int(bad.sum())} entries are NaN or infinite (first at index {int(np.argmax(bad))})"
        )
    return scores


class CountStrategy(ScoredStrategy):
    """Base of the count-based strategies: reads counts from the tracker or from a ``scores_file``.

    Attributes:
        count_field: the :class:`StrategyInputs` field holding the counts in tracking mode.
        base_requires: inputs needed in tracking mode.
        uses_precomputed: whether counts come from ``scores_file`` (see the module docstring).
    """

    count_field: ClassVar[str] = "switches_N"
    base_requires: ClassVar[frozenset[Input]] = frozenset({Input.DYNAMICS})
    allow_infinite_scores: ClassVar[bool] = False
    uses_precomputed: bool = False

    def __init__(self, *, scores_file: str | Path | None = None) -> None:
        super().__init__()
        self.scores_file = None if scores_file is None else str(scores_file)
        self._precomputed: np.ndarray | None = None
        if scores_file is not None:
            self._precomputed = load_scores_file(scores_file, allow_inf=self.allow_infinite_scores)
            self.uses_precomputed = True
        self.options = {"scores_file": self.scores_file}

    @property
    def requires(self) -> frozenset[Input]:  # type: ignore[override]
        """Inputs the loop must provide: :attr:`base_requires`, or ``{POOL_INDICES}`` (the counts are looked
        up in the ``scores_file``, without tracking) with ``scores_file``."""
        return frozenset({Input.POOL_INDICES}) if self.uses_precomputed else self.base_requires

    @property
    def elementwise(self) -> bool:  # type: ignore[override]
        """Tracked counts are per element (a sample, or a pixel of a per-pixel tracker); the counts of a
        ``scores_file`` are per sample."""
        return not self.uses_precomputed

    def precomputed_scores(self, pool_indices: np.ndarray | torch.Tensor) -> torch.Tensor:
        """The ``scores_file`` counts of the given training-split indices: float64 ``[P]``, aligned with them.

        Raises:
            ConfigError: the strategy has no ``scores_file``, or an index falls outside the file.
        """
        if self._precomputed is None:
            raise ConfigError(
                f"strategy {self.name!r} was built without option 'scores_file'; nothing is precomputed"
            )
        idx = pool_indices.detach().cpu().numpy() if isinstance(pool_indices, torch.Tensor) else pool_indices
        idx = np.asarray(idx)
        if idx.ndim != 1 or (idx.size and idx.dtype.kind not in "iu"):
            raise InputError(
                f"pool_indices must be a 1-D integer array, got dtype {idx.dtype} shape {idx.shape}"
            )
        size = self._precomputed.size
        if idx.size and (idx.min() < 0 or idx.max() >= size):
            raise ConfigError(
                f"strategy option 'scores_file' ({self.scores_file}) holds {size} scores but the pool "
                f"refers to training indices in [{int(idx.min())}, {int(idx.max())}]; "
                "the file must cover the whole training split"
            )
        return torch.from_numpy(self._precomputed[idx.astype(np.int64, copy=False)])

    def counts(self, inputs: StrategyInputs) -> torch.Tensor:
        """The counts this strategy ranks: the ``scores_file`` entries of ``pool_indices_N``, or the
        tracked :attr:`count_field`."""
        if self.uses_precomputed:
            indices = check_rows(inputs.require("pool_indices_N"), "pool_indices_N", inputs.n_pool, ndim=1)
            return self.precomputed_scores(indices)
        return check_rows(inputs.require(self.count_field), self.count_field, inputs.n_pool, ndim=1)

    def score(self, inputs: StrategyInputs) -> torch.Tensor:
        """The counts as float64 ``[N]``."""
        return self.counts(inputs).to(torch.float64)


class SwitchStrategy(CountStrategy):
    """``switch`` (FALSE): top-k switch counts, ties broken by a seeded random draw.

    Option ``tie_break``: ``"random"`` (default), or ``"entropy"``: samples tied at the cut are ranked by
    predictive entropy first (the strategy then also requires ``PROBS``), remaining ties at random.
    """

    name = "switch"
    TIE_BREAKS: ClassVar[tuple[str, ...]] = ("random", "entropy")

    def __init__(self, *, tie_break: str = "random", scores_file: str | Path | None = None) -> None:
        if tie_break not in self.TIE_BREAKS:
            raise ConfigError(
                f"strategy option 'tie_break' must be one of {list(self.TIE_BREAKS)}, got {tie_break!r}"
            )
        super().__init__(scores_file=scores_file)
        self.tie_break = tie_break
        self.options = {"tie_break": tie_break, "scores_file": self.scores_file}

    @property
    def requires(self) -> frozenset[Input]:  # type: ignore[override]
        """Count inputs (see :class:`CountStrategy`), plus ``PROBS`` with ``tie_break="entropy"``."""
        extra = {Input.PROBS} if self.tie_break == "entropy" else set()
        return super().requires | extra

    @property
    def selection(self) -> SelectionKind:  # type: ignore[override]
        """``"scores"``; ``"joint"`` with ``tie_break="entropy"`` (ties are broken on the probabilities)."""
        return SelectionKind.JOINT if self.tie_break == "entropy" else SelectionKind.SCORES

    def select(self, inputs: StrategyInputs, n: int, *, seed: int) -> Selection:
        """Top-``n`` switch counts with the configured tie-break."""
        n = check_n(n, inputs.n_pool)
        counts = self.sample_scores(inputs)
        secondary = None
        if self.tie_break == "entropy":
            probs = check_rows(inputs.require("probs_N_C"), "probs_N_C", inputs.n_pool, ndim=2)
            secondary = entropy_scores(probs)
        indices = select_top_k(counts, n, seed=seed, secondary=secondary)
        return Selection(indices=indices, scores=counts[indices])


class GaussStrategy(CountStrategy):
    """``gauss`` (GauSS): Gaussian-mixture switch sampling, see :func:`.selectors.gauss_select`.

    Option ``max_fit_samples`` (default 20000) caps the values the mixture is fitted on. After each
    :meth:`select`, :attr:`last_info` holds the fitted mixture and any fallback taken (for reports).
    """

    name = "gauss"

    def __init__(self, *, max_fit_samples: int = 20_000, scores_file: str | Path | None = None) -> None:
        super().__init__(scores_file=scores_file)
        self.max_fit_samples = positive_int_option(max_fit_samples, "max_fit_samples")
        if self.max_fit_samples < 2:
            raise ConfigError(f"strategy option 'max_fit_samples' must be >= 2, got {max_fit_samples}")
        self.last_info: GaussInfo | None = None
        self.options = {"max_fit_samples": self.max_fit_samples, "scores_file": self.scores_file}

    def select(self, inputs: StrategyInputs, n: int, *, seed: int) -> Selection:
        """GauSS selection of ``n`` pool positions; sets :attr:`last_info`."""
        n = check_n(n, inputs.n_pool)
        counts = self.sample_scores(inputs)
        indices, info = gauss_select(
            counts, n, seed=seed, return_info=True, max_fit_samples=self.max_fit_samples
        )
        self.last_info = info
        if info.fallback is not None:
            logger.info("gauss: fallback %r for a pool of %d (n=%d)", info.fallback, counts.size, n)
        return Selection(indices=indices, scores=counts[indices])

    def fitted(self) -> dict[str, np.ndarray]:
        """The mixture of the last :meth:`select` (:class:`~forgetting.strategies.selectors.GaussInfo`):
        ``gauss_means``, ``gauss_variances``, ``gauss_weights`` (float64 ``[2]``, low- then high-mean
        component, NaN when none was fitted), ``gauss_n_high``, ``gauss_n_fit`` (int64 ``[1]``) and
        ``gauss_fallback`` (a 0-d string, ``""`` when it sampled from the high component)."""
        info = self.last_info
        if info is None:
            return {}
        return {
            "gauss_means": np.asarray(info.means, dtype=np.float64),
            "gauss_variances": np.asarray(info.variances, dtype=np.float64),
            "gauss_weights": np.asarray(info.weights, dtype=np.float64),
            "gauss_n_high": np.asarray([info.n_high], dtype=np.int64),
            "gauss_n_fit": np.asarray([info.n_fit], dtype=np.int64),
            "gauss_fallback": np.asarray(info.fallback or ""),
        }


class SampledSwitchStrategy(CountStrategy):
    """``sampled-switch``: the authors' ``SampledSwitchSampler``, weighted 1-D k-means++ on switch counts.

    The first pick is the most-switched sample, each next one is drawn with probability
    ``∝ (switches_i · distance to the nearest picked count)²``, and once those weights are all zero the rest
    is the top switch counts. Bug-fixed (the reference compounds the weights) and seeded; see
    :func:`~forgetting.strategies.selectors.sampled_switch_select`.
    """

    name = "sampled-switch"

    def select(self, inputs: StrategyInputs, n: int, *, seed: int) -> Selection:
        """Weighted k-means++ picks on the switch counts, filled with the top counts."""
        n = check_n(n, inputs.n_pool)
        counts = self.sample_scores(inputs)
        indices = sampled_switch_select(counts, n, seed=seed)
        return Selection(indices=indices, scores=counts[indices])


class SampledCountStrategy(CountStrategy):
    """``sampled-count``: draw without replacement with ``P(i) ∝ switches_i²`` (in no paper).

    A softer alternative to FALSE's top-k: high counts are likely, not certain, so a query also holds some
    moderately switching samples. See :func:`~forgetting.strategies.selectors.sampled_count_select`.
    Before issue 18 this rule was called ``sampled-switch``.
    """

    name = "sampled-count"

    def select(self, inputs: StrategyInputs, n: int, *, seed: int) -> Selection:
        """Count²-proportional sample of ``n`` pool positions."""
        n = check_n(n, inputs.n_pool)
        counts = self.sample_scores(inputs)
        indices = sampled_count_select(counts, n, seed=seed)
        return Selection(indices=indices, scores=counts[indices])


class ForgettingStrategy(CountStrategy):
    """``forgetting`` (oracle, analysis only): top-k forgetting counts measured with the pool's true labels.

    Never-learned samples (``never_learned_N``; ``+inf`` in a ``scores_file``) are ranked as the most
    forgettable, as in Toneva et al. 2019: their score is one above the largest count of any learned sample,
    so they all tie at the top and are ordered at random (seeded), like every other tie.
    """

    name = "forgetting"
    count_field = "forgetting_N"
    base_requires = frozenset({Input.POOL_LABELS, Input.DYNAMICS})
    allow_infinite_scores = True

    def score(self, inputs: StrategyInputs) -> torch.Tensor:
        """Forgetting counts, float64 ``[N]``, never-learned samples set to ``max(learned) + 1``."""
        counts = self.counts(inputs).to(torch.float64)
        if self.uses_precomputed:
            never = torch.isinf(counts)
        else:
            never = check_rows(inputs.require("never_learned_N"), "never_learned_N", inputs.n_pool, ndim=1)
            never = never.to(device=counts.device, dtype=torch.bool)
        learned = torch.where(never, -torch.inf, counts)
        top = learned.max().clamp_min(0.0) if learned.numel() else counts.new_zeros(())
        return torch.where(never, top + 1.0, counts)
