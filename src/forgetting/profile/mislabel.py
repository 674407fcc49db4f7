"""Likely mislabelled samples: the area under the margin (AUM) with threshold samples (Pleiss et al. 2020).

**The rule.** A sample is likely mislabelled when its AUM falls below what a sample known to be
mislabelled reaches. Threshold samples make such samples on purpose: a random ``N / (K + 1)`` of the
training set is relabelled to a fake class ``K`` (no other sample has it, so these are mislabelled by
construction), a model with ``K + 1`` outputs is trained on the result, and the threshold is the 99th
percentile of the threshold samples' AUM in that run. A real sample whose AUM in the same run is below it
is flagged. As in the paper, this runs twice with disjoint sets of threshold samples, so that every sample is
judged in a run where it kept its label; a sample judged in both runs is flagged when its mean
``AUM - threshold`` is negative.

Why this rule: it is calibrated by the data and the model themselves (no hand-set cut-off on a score whose
scale depends on the network, the number of classes and the epochs), it is the rule of the paper that
defined AUM, and it costs one more training run per repetition.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from forgetting.data.source import DataSource
from forgetting.exceptions import ConfigError
from forgetting.profile.train import derived_seed, relabeled, train_profiled

__all__ = ["MislabelFlags", "MislabelSettings", "flag_mislabeled"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MislabelSettings:
    """How :func:`flag_mislabeled` fits the AUM threshold.

    Attributes:
        runs: training runs with threshold samples (disjoint sets); 0 turns the flags off. The paper: 2.
        percentile: the threshold is this percentile of the threshold samples' AUM (the paper: 99).
        fraction: share of the training set made threshold samples per run; default ``1 / (K + 1)`` (the
            paper: as many as an average class).
    """

    runs: int = 2
    percentile: float = 99.0
    fraction: float | None = None

    def __post_init__(self) -> None:
        if self.runs < 0:
            raise ConfigError(f"mislabel runs must be >= 0, got {self.runs}")
        if not 0.0 < self.percentile <= 100.0:
            raise ConfigError(f"mislabel percentile must be in (0, 100], got {self.percentile}")
        if self.fraction is not None and not 0.0 < self.fraction < 1.0:
            raise ConfigError(f"mislabel fraction must be in (0, 1), got {self.fraction}")


@dataclass
class MislabelFlags:
    """The likely mislabelled samples.

    Attributes:
        flagged: bool ``[N]``.
        gap: float32 ``[N]``: mean over the runs that judged the sample of ``AUM - threshold`` (negative:
            flagged; NaN: never judged).
        thresholds: the fitted threshold of each run.
        threshold_rows: int64 rows made threshold samples in each run.
        aum_runs: float32 ``[runs, N]`` AUM of every sample in each run (the fake class counted among the
            other logits).
        percentile, fraction: the settings used.
        seconds: wall time of the threshold runs.
    """

    flagged: np.ndarray
    gap: np.ndarray
    thresholds: list[float]
    threshold_rows: list[np.ndarray]
    aum_runs: np.ndarray
    percentile: float
    fraction: float
    seconds: float = 0.0

    @property
    def method(self) -> str:
        """The rule that flagged the samples, in one sentence (for reports)."""
        return (
            f"AUM below the {self.percentile:g}th percentile of threshold samples' AUM (Pleiss et al. 2020), "
            f"{len(self.thresholds)} run(s), {self.fraction:.3f} of the data as threshold samples per run"
        )


def flag_mislabeled(
    source: DataSource,
    labels_N: np.ndarray,
    num_classes: int,
    settings: MislabelSettings | None = None,
    *,
    seed: int = 0,
    **train_kwargs: Any,
) -> MislabelFlags | None:
    """Flag likely mislabelled samples with AUM threshold samples (see the module docstring).

    Args:
        source: the training data.
        labels_N: int64 ``[N]`` its labels.
        num_classes: K (the threshold runs train ``K + 1`` outputs).
        settings: runs, percentile, fraction.
        seed: seeds the threshold samples and the runs.
        **train_kwargs: passed to :func:`train_profiled` (``model``, ``model_options``, ``train``,
            ``train_fn``, ``device``); threshold runs always observe at presentation time, like the paper.

    Returns:
        The flags, or ``None`` when ``settings.runs == 0``.
    """
    settings = settings or MislabelSettings()
    if settings.runs == 0:
        return None
    n = len(labels_N)
    fraction = settings.fraction if settings.fraction is not None else 1.0 / (num_classes + 1)
    per_run = max(1, round(fraction * n))
    if per_run * settings.runs > n:
        raise ConfigError(
            f"{settings.runs} runs x {per_run} threshold samples exceed the {n} training samples; lower "
            "mislabel.runs or mislabel.fraction"
        )
    start = time.perf_counter()
    perm = np.random.default_rng([seed, 3]).permutation(n)
    labels = torch.as_tensor(np.asarray(labels_N, dtype=np.int64))
    gaps: list[np.ndarray] = []
    thresholds: list[float] = []
    rows_per_run: list[np.ndarray] = []
    aum_runs: list[np.ndarray] = []
    for r in range(settings.runs):
        rows = np.sort(perm[r * per_run : (r + 1) * per_run])
        fake = labels.clone()
        fake[torch.from_numpy(rows)] = num_classes
        trained = train_profiled(
            relabeled(source, fake),
            num_classes + 1,
            seed=derived_seed(seed, 3, r),
            **{**train_kwargs, "observe": "presentation"},
        )
        aum = trained.dynamics.aum
        threshold = float(np.percentile(aum[rows], settings.percentile))
        gap = (aum - threshold).astype(np.float32)
        gap[rows] = np.nan
        thresholds.append(threshold)
        rows_per_run.append(rows.astype(np.int64))
        gaps.append(gap)
        aum_runs.append(aum.astype(np.float32))
        logger.info("threshold run %d/%d: threshold AUM %.3f", r + 1, settings.runs, threshold)
    stacked = np.stack(gaps)
    judged = ~np.isnan(stacked)
    with np.errstate(invalid="ignore"):
        mean_gap = np.where(judged.any(0), np.nansum(stacked, 0) / np.maximum(judged.sum(0), 1), np.nan)
    flagged = np.nan_to_num(mean_gap, nan=0.0) < 0.0
    return MislabelFlags(
        flagged=flagged,
        gap=mean_gap.astype(np.float32),
        thresholds=thresholds,
        threshold_rows=rows_per_run,
        aum_runs=np.stack(aum_runs),
        percentile=settings.percentile,
        fraction=float(fraction),
        seconds=time.perf_counter() - start,
    )
