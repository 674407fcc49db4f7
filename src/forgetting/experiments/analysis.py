"""The analysis of a run's stored results: learning curves, AUBC, paired comparisons, per-round gains.

Pure functions over the results store (:class:`~forgetting.experiments.store.ResultStore`): no plotting, no
HTML. The report (:mod:`forgetting.experiments.report`) and the benchmarks import them; nothing here imports
the report.

Every experiment has a *headline metric*: ``miou`` when its rounds hold it (segmentation), otherwise
``accuracy`` (classification).

Definitions:

* **Learning curve**: the headline metric against the number of labels (labeled images for segmentation),
  per eval set and for the *mean OOD* value (mean over every eval set other than ``test`` at the same
  round); mean ± sample standard deviation over seeds, rounds aligned by index.
* **Normalised AUBC** (area under the budget curve): ``trapezoid(metric, n_labeled) / (n_max - n_min)``,
  in ``[0, 1]``; with a single round it is that round's value.
* **Win/tie/loss**: for ``switch`` and ``gauss`` against every other strategy of the same dataset, model and
  variant, paired by seed on AUBC; a tie is ``|difference| < 0.005``. The paired test is the Wilcoxon
  signed-rank test (scipy) with at least 6 pairs, otherwise the paired t-test; the table names the test.
* **Per-round gain** (the papers' own metric; they report accuracy gains such as "up to 4.5 %", not AUBC):
  for the same pairs, on every eval set and the mean OOD value, the difference ``target - baseline`` of
  the metric at each round (rounds aligned by index), averaged over the seeds both ran (paired by seed);
  then its mean over the rounds and its maximum over the rounds, with the labels where the maximum falls
  (:func:`round_gains`). Shown in percentage points.
"""

from __future__ import annotations

import math
import warnings
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from forgetting.exceptions import ShapeError
from forgetting.experiments.store import ExperimentRow, ResultStore

__all__ = [
    "MEAN_OOD",
    "PROPOSED",
    "SEGMENTATION_METRIC",
    "TIE_THRESHOLD",
    "WILCOXON_MIN_PAIRS",
    "Comparison",
    "ExperimentCurves",
    "RoundGain",
    "aubc",
    "by_metric",
    "compare_paired",
    "condition_key",
    "curves_from_frame",
    "groups",
    "headline_metric",
    "load_curves",
    "metric_label",
    "nanmean",
    "round_gains",
]


#: The dynamics-based strategies compared against every other strategy.
PROPOSED = ("switch", "gauss")


#: |AUBC difference| below this is a tie.
TIE_THRESHOLD = 0.005


MEAN_OOD = "mean OOD"


WILCOXON_MIN_PAIRS = 6


#: The headline metric of segmentation experiments; classification experiments use ``accuracy``.
SEGMENTATION_METRIC = "miou"


_METRIC_LABELS = {
    "accuracy": "accuracy",
    "miou": "mIoU",
    "pixel_accuracy": "pixel accuracy",
    "mean_class_accuracy": "mean class accuracy",
    "fwiou": "fwIoU",
    "nll": "NLL",
    "ece": "ECE",
}


def headline_metric(metrics: Collection[str]) -> str:
    """``"miou"`` when ``metrics`` (the metric names of one experiment) hold it, otherwise ``"accuracy"``."""
    return SEGMENTATION_METRIC if SEGMENTATION_METRIC in metrics else "accuracy"


def metric_label(metric: str) -> str:
    """The display name of a metric (``miou`` -> ``mIoU``); unknown names are returned unchanged."""
    return _METRIC_LABELS.get(metric, metric)


def aubc(n_labeled: Sequence[float] | np.ndarray, accuracy: Sequence[float] | np.ndarray) -> float:
    """Normalised area under the accuracy-vs-labels curve (trapezoid rule / label range), in ``[0, 1]``.

    Args:
        n_labeled: ``[R]`` increasing label counts.
        accuracy: ``[R]`` accuracies in ``[0, 1]``.

    Returns:
        The area divided by ``n_labeled[-1] - n_labeled[0]``; the single accuracy when ``R == 1``; NaN when
        ``R == 0`` or any accuracy is NaN.
    """
    x = np.asarray(n_labeled, dtype=np.float64)
    y = np.asarray(accuracy, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ShapeError(f"n_labeled {x.shape} and accuracy {y.shape} must be 1-D of equal length")
    if x.size == 0 or np.isnan(y).any():
        return math.nan
    if x.size == 1 or x[-1] == x[0]:
        return float(y.mean())
    return float(np.trapezoid(y, x) / (x[-1] - x[0]))


@dataclass
class ExperimentCurves:
    """The curves of one experiment's metric (its headline metric unless another one was asked for).

    Attributes:
        row: the experiment's store row.
        n_labeled: int ``[R]`` labels (labeled images for segmentation) per round.
        values: eval set -> float64 ``[R]``; includes :data:`MEAN_OOD` when the experiment has OOD sets.
        metric: the metric of :attr:`values` (``accuracy``, ``miou``...).
        segmentation: whether the experiment is a segmentation one (its rounds hold ``miou``).
    """

    row: ExperimentRow
    n_labeled: np.ndarray
    values: dict[str, np.ndarray] = field(default_factory=dict)
    metric: str = "accuracy"
    segmentation: bool = False

    @property
    def accuracy(self) -> dict[str, np.ndarray]:
        """Alias of :attr:`values` (the name from when every curve was an accuracy curve)."""
        return self.values

    @property
    def ood_sets(self) -> list[str]:
        return [k for k in self.values if k not in ("test", MEAN_OOD)]

    def aubc(self, eval_set: str) -> float:
        """Normalised AUBC of ``eval_set`` (NaN if the experiment has no such set)."""
        if eval_set not in self.values:
            return math.nan
        return aubc(self.n_labeled, self.values[eval_set])


def load_curves(store: ResultStore, metric: str = "auto") -> list[ExperimentCurves]:
    """Curves of every experiment with at least one stored round of ``metric``.

    Args:
        store: the results store.
        metric: a metric name, or ``"auto"`` for each experiment's headline metric (``miou`` when its rounds
            hold it, otherwise ``accuracy``).
    """
    return curves_from_frame(store.metrics_frame(), store.experiments(), metric)


def curves_from_frame(
    frame: list[dict[str, Any]], experiments: list[ExperimentRow], metric: str
) -> list[ExperimentCurves]:
    wanted = {"accuracy", SEGMENTATION_METRIC} if metric == "auto" else {metric}
    # experiment -> metric -> round -> eval set -> value
    by_exp: dict[str, dict[str, dict[int, dict[str, float]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(dict))
    )
    labels: dict[str, dict[int, int]] = defaultdict(dict)
    segmentation: set[str] = set()
    for r in frame:
        if r["metric"] == SEGMENTATION_METRIC:
            segmentation.add(r["experiment_id"])
        if r["metric"] not in wanted:
            continue
        by_exp[r["experiment_id"]][r["metric"]][r["round"]][r["eval_set"]] = r["value"]
        labels[r["experiment_id"]][r["round"]] = r["n_labeled"]
    out = []
    for row in experiments:
        chosen = metric
        if metric == "auto":
            chosen = headline_metric(set(by_exp.get(row.id, {})))
        rounds = by_exp.get(row.id, {}).get(chosen)
        if not rounds:
            continue
        order = sorted(rounds)
        sets = sorted({s for r in order for s in rounds[r]}, key=lambda s: (s != "test", s))
        values = {s: np.array([rounds[r].get(s, math.nan) for r in order]) for s in sets}
        ood = [s for s in sets if s != "test"]
        if ood:
            values[MEAN_OOD] = np.mean(np.stack([values[s] for s in ood]), axis=0)
        n_labeled = np.array([labels[row.id][r] for r in order])
        out.append(ExperimentCurves(row, n_labeled, values, chosen, row.id in segmentation))
    return out


@dataclass
class Comparison:
    """A paired comparison of two strategies on one AUBC column.

    Attributes:
        diffs: float64 ``[P]`` ``target - baseline`` per shared seed.
        test: ``"Wilcoxon signed-rank"``, ``"paired t-test"`` or ``"none"``.
        p_value: two-sided p-value; NaN when undefined (fewer than 2 pairs, or no variation).
    """

    target: str
    baseline: str
    diffs: np.ndarray
    wins: int
    ties: int
    losses: int
    test: str
    p_value: float


def compare_paired(target: str, baseline: str, a: dict[int, float], b: dict[int, float]) -> Comparison:
    """Win/tie/loss and a paired test of ``a`` (target) against ``b`` (baseline), both seed -> AUBC."""
    from scipy import stats

    seeds = sorted(s for s in set(a) & set(b) if not (math.isnan(a[s]) or math.isnan(b[s])))
    diffs = np.array([a[s] - b[s] for s in seeds], dtype=np.float64)
    wins = int((diffs >= TIE_THRESHOLD).sum())
    losses = int((diffs <= -TIE_THRESHOLD).sum())
    ties = int(diffs.size - wins - losses)
    p = math.nan
    if diffs.size >= WILCOXON_MIN_PAIRS:
        test = "Wilcoxon signed-rank"
        if np.any(diffs != 0):
            p = float(stats.wilcoxon(diffs).pvalue)
        else:
            p = 1.0
    elif diffs.size >= 2:
        test = "paired t-test"
        if np.ptp(diffs) > 0:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                p = float(stats.ttest_rel([a[s] for s in seeds], [b[s] for s in seeds]).pvalue)
        elif np.all(diffs == 0):
            p = 1.0
    else:
        test = "none"
    return Comparison(target, baseline, diffs, wins, ties, losses, test, p)


@dataclass
class RoundGain:
    """The per-round difference of ``target`` over ``baseline`` on one eval set, paired by seed.

    Attributes:
        dataset, model, variant, metric: the condition (``metric`` is the curves' metric).
        target, baseline: the strategies compared.
        eval_set: an eval set name or :data:`MEAN_OOD`.
        seeds: the seeds both strategies ran (finished), over which each round's difference is averaged.
        n_labeled: int ``[R]`` labels of the rounds compared (the target's, rounds aligned by index).
        diffs: float64 ``[R]``: mean over the paired seeds of ``target - baseline`` at each round.
        mean: the mean of ``diffs`` over the rounds (NaN when there is none).
        max: the maximum of ``diffs`` over the rounds (NaN when there is none).
        max_labels: the labels of the round where ``max`` falls (-1 when there is none).
    """

    dataset: str
    model: str
    variant: str
    metric: str
    target: str
    baseline: str
    eval_set: str
    seeds: tuple[int, ...]
    n_labeled: np.ndarray
    diffs: np.ndarray
    mean: float
    max: float
    max_labels: int


def _paired_round_diffs(
    a: dict[int, ExperimentCurves], b: dict[int, ExperimentCurves], eval_set: str
) -> tuple[tuple[int, ...], np.ndarray, np.ndarray]:
    """Seeds paired, labels ``[R]`` and the per-round mean over seeds of ``a - b`` on ``eval_set``."""
    seeds = tuple(s for s in sorted(set(a) & set(b)) if eval_set in a[s].values and eval_set in b[s].values)
    if not seeds:
        return seeds, np.zeros(0, dtype=np.int64), np.zeros(0)
    length = min(min(len(a[s].values[eval_set]), len(b[s].values[eval_set])) for s in seeds)
    stacked = np.stack([a[s].values[eval_set][:length] - b[s].values[eval_set][:length] for s in seeds])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a round that is NaN for every seed stays NaN
        diffs = np.nanmean(stacked, axis=0) if stacked.size else np.zeros(0)
    return seeds, np.asarray(a[seeds[0]].n_labeled[:length]), diffs


def round_gains(curves: list[ExperimentCurves], targets: Sequence[str] = PROPOSED) -> list[RoundGain]:
    """The papers' metric: per-round gains of each of ``targets`` over every other strategy.

    For every dataset, model, variant and metric, every target strategy present and every other strategy
    (the baseline), and every eval set both hold (plus :data:`MEAN_OOD`): the per-round difference of the
    metric, averaged over the seeds both ran, then its mean and maximum over the rounds. Pass finished
    experiments only (as the report does).

    Args:
        curves: experiment curves (any mix of metrics; each metric is compared with itself).
        targets: the strategies whose gains are computed (default :data:`PROPOSED`).

    Returns:
        One :class:`RoundGain` per (condition, target, baseline, eval set), sorted.
    """
    by_group: dict[tuple[str, str, str, str], dict[str, dict[int, ExperimentCurves]]] = defaultdict(
        lambda: defaultdict(dict)
    )
    for c in curves:
        s = c.row.spec
        by_group[(s.dataset, s.model, s.variant, c.metric)][s.strategy][s.seed] = c
    out: list[RoundGain] = []
    for (dataset, model, variant, metric), strategies in sorted(by_group.items()):
        for target in targets:
            if target not in strategies:
                continue
            for baseline in sorted(strategies):
                if baseline == target:
                    continue
                sets = sorted(
                    {e for c in strategies[target].values() for e in c.values},
                    key=lambda e: (e != "test", e == MEAN_OOD, e),
                )
                for eval_set in sets:
                    seeds, labels, diffs = _paired_round_diffs(
                        strategies[target], strategies[baseline], eval_set
                    )
                    finite = np.isfinite(diffs)
                    best = int(np.argmax(np.where(finite, diffs, -np.inf))) if finite.any() else -1
                    out.append(
                        RoundGain(
                            dataset=dataset,
                            model=model,
                            variant=variant,
                            metric=metric,
                            target=target,
                            baseline=baseline,
                            eval_set=eval_set,
                            seeds=seeds,
                            n_labeled=labels,
                            diffs=diffs,
                            mean=float(diffs[finite].mean()) if finite.any() else math.nan,
                            max=float(diffs[best]) if best >= 0 else math.nan,
                            max_labels=int(labels[best]) if best >= 0 else -1,
                        )
                    )
    return out


def by_metric(curves: list[ExperimentCurves]) -> dict[str, list[ExperimentCurves]]:
    """``curves`` grouped by metric, ``accuracy`` first."""
    out: dict[str, list[ExperimentCurves]] = defaultdict(list)
    for c in curves:
        out[c.metric].append(c)
    return dict(sorted(out.items(), key=lambda kv: (kv[0] != "accuracy", kv[0])))


def groups(curves: list[ExperimentCurves]) -> dict[tuple[str, str, str], list[ExperimentCurves]]:
    out: dict[tuple[str, str, str], list[ExperimentCurves]] = defaultdict(list)
    for c in curves:
        out[(c.row.spec.dataset, c.row.spec.model, c.metric)].append(c)
    return dict(sorted(out.items()))


def condition_key(c: ExperimentCurves) -> tuple[str, str, str, str]:
    s = c.row.spec
    return (s.dataset, s.model, s.strategy, s.variant)


def nanmean(values: Sequence[float]) -> float:
    """Mean of the non-NaN ``values``; NaN when there are none (no warning)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    return float(v.mean()) if v.size else math.nan
