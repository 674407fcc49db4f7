"""Active learning for segmentation: per-pixel scores of the unlabeled sections, reduced to one score per
section, then ranked by the classification strategies' own selectors.

A segmentation round differs from a classification round in three places, which
:class:`~forgetting.segmentation.task.SegmentationTask` implements for the task-agnostic loop
(:func:`forgetting.loop.run_active_learning`) with the functions of this module:

* **Scores.** The pool is observed per pixel while the model trains (switch counts of every pixel, from an
  :class:`~forgetting.events.EventTracker` of shape ``(P, H, W)``), or scored per pixel after training
  (entropy, margin, least confidence of each pixel's softmax). A :class:`PixelScoreReducer` turns the pixel
  scores of each section into one image score, streaming over batches so that no ``[P, K, H, W]``
  probability tensor is ever held.
* **Selection.** The image scores take the place of the classification scores: switch-type strategies
  (``switch``, ``gauss``, ``sampled-switch``) rank them as counts, probability strategies (``entropy``,
  ``margin``, ``least-confidence``) as their top-k score, ``bald`` as the per-pixel mutual information of
  K MC-dropout passes; ``coreset`` runs on the segmenter's pooled bottleneck embedding (``model.embed``)
  and ``random`` needs nothing. :func:`segmentation_form` says which of these a strategy is, and rejects
  the others (BADGE, BatchBALD, the oracle) with the list of what works.
* **Evaluation.** mIoU, pixel accuracy, mean class accuracy, FWIoU and per-class IoU and accuracy
  (:func:`segmentation_eval_metrics`).

Reductions (``reduction``) over the valid pixels ``V`` of a section, pixel scores ``s_p``:

* ``mean``: ``Σ_V s_p / |V|``, the default;
* ``sum``: ``Σ_V s_p`` (favours large sections when sizes differ);
* ``top-q``: the mean of the ``ceil(q |V|)`` highest pixel scores (``top_q = q``, default 0.1): a section
  with one unstable region beats a section that is slightly unstable everywhere;
* ``class-balanced``: a weighted mean, each pixel weighted by ``1 / f_c`` where ``f_c`` is the share of the
  pool's pixels predicted as its predicted class ``c``: the scores of pixels predicted as rare classes (thin
  facies such as chalk and scruff) count as much, in total, as those of the common ones.

On the unlabeled pool every pixel is valid (its mask is unknown); ``valid`` masks serve callers that know
their padding.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from forgetting.data.source import DataSource, TensorSource
from forgetting.events import EventTracker
from forgetting.exceptions import ConfigError, InputError, ShapeError, check_choice
from forgetting.inference import (
    autocast_context,
    default_batch_size,
    eval_mode,
    head_only_dropout,
    iter_batches,
    model_device,
    predict,
)
from forgetting.models.base import Segmenter, mc_dropout
from forgetting.performance import flush_denormals
from forgetting.segmentation.training import evaluate_segmentation, predict_segmentation
from forgetting.settings import REDUCTIONS, Reduction, SegmentationOptions
from forgetting.strategies import Input, SelectionKind, Strategy, StrategyInputs, list_strategies

__all__ = [
    "REDUCTIONS",
    "SEGMENTATION_FORMS",
    "PixelScoreReducer",
    "SegmentationOptions",
    "SegmentationQueryInputs",
    "pixel_batch_size",
    "queried_section_arrays",
    "reduce_pixel_scores",
    "segmentation_eval_metrics",
    "segmentation_form",
    "segmentation_strategies",
    "segmentation_strategy_inputs",
    "tracked_switch_scores",
]

logger = logging.getLogger(__name__)


#: How a strategy applies to segmentation (see :func:`segmentation_form`).
SEGMENTATION_FORMS: tuple[str, ...] = (
    "none",
    "pixel-probs",
    "pixel-mc",
    "pixel-switches",
    "image-scores",
    "embeddings",
)
SegmentationForm = Literal["none", "pixel-probs", "pixel-mc", "pixel-switches", "image-scores", "embeddings"]

# Switch counts above this are stored as 255 in the uint8 switch maps of the queried sections.
_UINT8_MAX = 255
# Input values per accelerator inference batch when the caller sets no batch size: 2**22 (a [B, K, H, W]
# float32 logit tensor of 6 classes is then 96 MiB for one-channel sections). CPU batches follow
# forgetting.performance.inference_batch_size.
_ACCELERATOR_VALUES = 1 << 22


def pixel_batch_size(
    device: torch.device, height: int, width: int, channels: int = 1, model: nn.Module | None = None
) -> int:
    """Sections per inference batch for ``channels x height x width`` sections: on a CPU the batch of
    :func:`~forgetting.inference.default_batch_size` (sized to the model's largest layer output when
    ``model`` is given: 32 sections of 64 x 64 for unet base 8, one full F3 section of 255 x 701; without
    it 2**18 input values per batch); on an accelerator the sample batch size capped to about four million
    input values; at least 1."""
    values = max(1, channels * height * width)
    if device.type == "cpu":
        return default_batch_size(device, (channels, height, width), model)
    return max(1, min(default_batch_size(device, (channels, height, width)), _ACCELERATOR_VALUES // values))


class PixelScoreReducer:
    """Streaming reduction of per-pixel scores to one score per section (``update`` per batch, ``finalize``).

    Args:
        n: number of sections N.
        num_classes: K (needed by ``class-balanced``, which keeps ``[N, K]`` sums and counts).
        reduction: one of :data:`REDUCTIONS`.
        top_q: the fraction of valid pixels ``top-q`` averages.
        device: where the ``[N]`` (``[N, K]``) accumulators live; default the device of the first update.

    State is O(N) (O(N K) for ``class-balanced``); each update is vectorised over its batch and does not
    synchronise with the host.
    """

    def __init__(
        self,
        n: int,
        num_classes: int,
        *,
        reduction: Reduction = "mean",
        top_q: float = 0.1,
        device: torch.device | str | None = None,
    ) -> None:
        check_choice("reduction", reduction, REDUCTIONS)
        if not 0.0 < float(top_q) <= 1.0:
            raise ConfigError(f"top_q must lie in (0, 1], got {top_q}")
        if num_classes < 1:
            raise ConfigError(f"num_classes must be >= 1, got {num_classes}")
        self.n = int(n)
        self.num_classes = int(num_classes)
        self.reduction: Reduction = reduction
        self.top_q = float(top_q)
        self._device = None if device is None else torch.device(device)
        self._state: dict[str, torch.Tensor] | None = None

    def _allocate(self, device: torch.device) -> dict[str, torch.Tensor]:
        n, k = self.n, self.num_classes
        f64 = torch.float64
        if self.reduction == "class-balanced":
            return {
                "class_sum": torch.zeros(n, k, dtype=f64, device=device),
                "class_count": torch.zeros(n, k, dtype=f64, device=device),
            }
        if self.reduction == "top-q":
            return {"top": torch.full((n,), math.nan, dtype=f64, device=device)}
        return {
            "sum": torch.zeros(n, dtype=f64, device=device),
            "count": torch.zeros(n, dtype=f64, device=device),
        }

    def update(
        self,
        rows: slice | torch.Tensor,
        scores_B_H_W: torch.Tensor,
        pred_B_H_W: torch.Tensor | None = None,
        valid_B_H_W: torch.Tensor | None = None,
    ) -> None:
        """Add the pixel scores of sections ``rows`` (a slice or int64 ``[B]`` row indices, each row once).

        Args:
            rows: which of the N sections this batch holds.
            scores_B_H_W: float (or integer counts) pixel scores, higher = more worth labelling.
            pred_B_H_W: int64 predicted classes; required by ``class-balanced``.
            valid_B_H_W: bool pixels to count; default all.
        """
        if scores_B_H_W.ndim != 3:
            raise ShapeError(f"pixel scores must be [B, H, W], got shape {tuple(scores_B_H_W.shape)}")
        device = self._device or scores_B_H_W.device
        if self._state is None:
            self._state = self._allocate(device)
        b = int(scores_B_H_W.shape[0])
        s = scores_B_H_W.to(device=device, dtype=torch.float64).reshape(b, -1)
        valid = (
            torch.ones_like(s, dtype=torch.bool)
            if valid_B_H_W is None
            else valid_B_H_W.to(device=device, dtype=torch.bool).reshape(b, -1)
        )
        if isinstance(rows, torch.Tensor):
            rows = rows.to(device)
        st = self._state
        if self.reduction == "class-balanced":
            if pred_B_H_W is None:
                raise InputError("reduction 'class-balanced' needs the predicted classes of the pixels")
            k = self.num_classes
            pred = pred_B_H_W.to(device=device, dtype=torch.int64).reshape(b, -1)
            slot = torch.where(valid & (pred >= 0) & (pred < k), pred, k)
            sums = torch.zeros(b, k + 1, dtype=torch.float64, device=device)
            counts = torch.zeros_like(sums)
            sums.scatter_add_(1, slot, torch.where(valid, s, 0.0))
            counts.scatter_add_(1, slot, torch.ones_like(s))
            st["class_sum"][rows] = sums[:, :k]
            st["class_count"][rows] = counts[:, :k]
        elif self.reduction == "top-q":
            n_valid = valid.sum(1)
            k_top = torch.ceil(n_valid.double() * self.top_q).long().clamp_min(1)
            ordered = torch.where(valid, s, -math.inf).sort(dim=1, descending=True).values
            taken = torch.arange(ordered.shape[1], device=device)[None, :] < k_top[:, None]
            top = torch.where(taken, ordered, 0.0).sum(1) / k_top.double()
            st["top"][rows] = torch.where(n_valid > 0, top, math.nan)
        else:
            st["sum"][rows] = torch.where(valid, s, 0.0).sum(1)
            st["count"][rows] = valid.sum(1).double()

    def finalize(self) -> torch.Tensor:
        """float64 ``[N]`` section scores (NaN for a section without valid pixels or never updated)."""
        if self._state is None:
            return torch.full((self.n,), math.nan, dtype=torch.float64)
        st = self._state
        if self.reduction == "top-q":
            return st["top"].clone()
        if self.reduction == "class-balanced":
            share = st["class_count"].sum(0)
            share = share / share.sum().clamp_min(1.0)
            weight = torch.where(share > 0, 1.0 / share, 0.0)  # [K]
            num = (st["class_sum"] * weight).sum(1)
            den = (st["class_count"] * weight).sum(1)
            return torch.where(den > 0, num / den, math.nan)
        if self.reduction == "sum":
            return torch.where(st["count"] > 0, st["sum"], math.nan)
        return torch.where(st["count"] > 0, st["sum"] / st["count"].clamp_min(1.0), math.nan)


def reduce_pixel_scores(
    scores_N_H_W: torch.Tensor,
    *,
    reduction: Reduction = "mean",
    top_q: float = 0.1,
    pred_N_H_W: torch.Tensor | None = None,
    valid_N_H_W: torch.Tensor | None = None,
    num_classes: int | None = None,
    batch_size: int = 64,
) -> torch.Tensor:
    """One score per section from pixel scores: float64 ``[N]`` on the scores' device (see the module
    docstring for the reductions).

    Args:
        scores_N_H_W: float or integer pixel scores (e.g. switch counts).
        reduction: one of :data:`REDUCTIONS`.
        top_q: fraction of valid pixels averaged by ``top-q``.
        pred_N_H_W: int64 predicted classes (``class-balanced`` only).
        valid_N_H_W: bool pixels to count; default all.
        num_classes: K; default ``pred_N_H_W.max() + 1`` (``class-balanced``) or 1.
        batch_size: sections per vectorised chunk (bounds the temporaries).
    """
    if scores_N_H_W.ndim != 3:
        raise ShapeError(f"pixel scores must be [N, H, W], got shape {tuple(scores_N_H_W.shape)}")
    if num_classes is None:
        num_classes = int(pred_N_H_W.max()) + 1 if pred_N_H_W is not None and pred_N_H_W.numel() else 1
    n = int(scores_N_H_W.shape[0])
    reducer = PixelScoreReducer(n, num_classes, reduction=reduction, top_q=top_q)
    for sl in iter_batches(n, batch_size):
        reducer.update(
            sl,
            scores_N_H_W[sl],
            None if pred_N_H_W is None else pred_N_H_W[sl],
            None if valid_N_H_W is None else valid_N_H_W[sl],
        )
    out = reducer.finalize()
    return out.to(scores_N_H_W.device) if n else out


def segmentation_form(strategy: Strategy) -> SegmentationForm:
    """How ``strategy`` applies to segmentation, from what it declares (``requires``, ``selection``,
    ``elementwise``):

    * ``"none"``: needs no input (``random``);
    * ``"pixel-probs"``: an elementwise score-selected strategy on probabilities (``entropy``, ``margin``,
      ``least-confidence``): its own ``score`` runs on every pixel's softmax, then the reduction;
    * ``"pixel-mc"``: the same on MC-dropout probabilities (``bald``): its ``score`` runs on every pixel's K
      stochastic softmaxes, then the reduction (needs a model with dropout);
    * ``"pixel-switches"``: the same on switch counts (``switch``, ``gauss``, ``sampled-switch``): the pool's
      pixel switch counts, scored and reduced, take the place of the counts;
    * ``"image-scores"``: one precomputed score per section (a ``scores_file``, read by dataset index);
    * ``"embeddings"``: needs only embeddings (``coreset``): the segmenter's pooled bottleneck.

    Raises:
        ConfigError: the strategy has no segmentation form (a joint selection, gradient embeddings, the
            pool's labels, or a tie-break on probabilities); the message lists the strategies that work.
    """
    form = _form_of(strategy)
    if form is None:
        requires = ", ".join(sorted(strategy.requires))
        raise ConfigError(
            f"strategy {strategy.name!r} has no segmentation form (it needs {requires}, selection "
            f"{strategy.selection!s}); segmentation experiments support: "
            f"{', '.join(segmentation_strategies())}"
        )
    return form


def _form_of(strategy: Strategy) -> SegmentationForm | None:
    requires = frozenset(strategy.requires)
    if not requires:
        return "none"
    if Input.POOL_LABELS in requires:
        return None
    by_scores = strategy.selection == SelectionKind.SCORES
    if by_scores and requires == {Input.POOL_INDICES}:
        return "image-scores"
    if by_scores and strategy.elementwise:
        if requires == {Input.PROBS}:
            return "pixel-probs"
        if requires == {Input.MC_PROBS}:
            return "pixel-mc"
        if requires == {Input.DYNAMICS}:
            return "pixel-switches"
    if requires == {Input.EMBEDDINGS}:
        return "embeddings"
    return None


def segmentation_strategies() -> list[str]:
    """The registered strategies (with default options) that run on segmentation."""
    return list_strategies(where=lambda strategy: _form_of(strategy) is not None)


# A per-batch pixel scorer: float [B, C, H, W] on the device -> (scores [B, H, W], pred [B, H, W]).
_BatchScorer = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def _as_source(images: torch.Tensor | DataSource) -> DataSource:
    return images if isinstance(images, DataSource) else TensorSource(images)


def _score_pixels(
    images: DataSource,
    device: torch.device,
    batch_size: int,
    score_batch: _BatchScorer,
    reducer: PixelScoreReducer | None,
    *,
    keep: bool,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Run ``score_batch`` over the sections of ``images`` in batches of ``batch_size``, feeding ``reducer``
    (rows ``0..M-1``); with ``keep`` also return ``(scores float32 [M, H, W], pred int64 [M, H, W])`` on
    ``device``, else ``(None, None)``. The caller sets eval mode, autocast and RNG state."""
    kept_scores: list[torch.Tensor] = []
    kept_pred: list[torch.Tensor] = []
    start = 0
    for x, _ in images.batches(device, batch_size, targets=False):
        b = int(x.shape[0])
        scores, pred = score_batch(x)
        if reducer is not None:
            reducer.update(slice(start, start + b), scores, pred)
        if keep:
            kept_scores.append(scores.float())
            kept_pred.append(pred)
        start += b
    if not keep:
        return None, None
    if not kept_scores:
        empty = torch.zeros((0, *images.input_shape[-2:]), device=device)
        return empty, empty.long()
    return torch.cat(kept_scores), torch.cat(kept_pred)


@flush_denormals()
@torch.inference_mode()
def _pixel_probability_scores(
    model: nn.Module,
    images: torch.Tensor | DataSource,
    strategy: Strategy,
    reducer: PixelScoreReducer | None,
    *,
    batch_size: int,
    keep: bool = False,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Score every pixel of ``images`` (uint8 ``[M, C, H, W]`` or a source) with the strategy's elementwise
    probability scorer.

    Feeds ``reducer`` (rows ``0..M-1``); with ``keep`` also returns ``(scores float32 [M, H, W], pred int64
    [M, H, W])`` on the model's device, else ``(None, None)``.
    """
    device = model_device(model)

    def score_batch(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        probs = model(x).float().softmax(1)  # [B, K, H, W]
        b, k, h, w = probs.shape
        flat = probs.permute(0, 2, 3, 1).reshape(-1, k)
        scores = strategy.score(StrategyInputs(n_pool=int(flat.shape[0]), probs_N_C=flat))  # type: ignore[attr-defined]
        return scores.reshape(b, h, w), probs.argmax(1)

    with eval_mode(model), autocast_context(device):
        return _score_pixels(_as_source(images), device, batch_size, score_batch, reducer, keep=keep)


@flush_denormals()
@torch.inference_mode()
def _pixel_mc_scores(
    model: nn.Module,
    images: torch.Tensor | DataSource,
    strategy: Strategy,
    reducer: PixelScoreReducer | None,
    *,
    mc_samples: int,
    batch_size: int,
    seed: int,
    keep: bool = False,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Score every pixel of ``images`` (uint8 ``[M, C, H, W]`` or a source) from ``mc_samples`` MC-dropout
    passes.

    With a zoo segmenter whose only dropout is ``dropout_layer`` (before its 1x1 head), the decoder runs once
    per batch and only dropout and the head run K times: the same distribution as K full passes, K times
    cheaper. Otherwise K full passes run with dropout on (BatchNorm in eval mode). The dropout masks are
    drawn from a generator seeded with ``seed``, so a repeated call gives the same scores. Batches are cut to
    ``batch_size // K`` sections so the K stacked softmaxes stay within the pixel budget of one batch.

    Returns ``(scores float32 [M, H, W], pred int64 [M, H, W])`` (prediction of the mean softmax) with
    ``keep``, else ``(None, None)``.
    """
    device = model_device(model)
    k = int(mc_samples)
    fast = head_only_dropout(model) and isinstance(model, Segmenter)

    def score_batch(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, w = x.shape[-2:]
        with mc_dropout(model):
            if fast:
                feats = model.decode(x)  # type: ignore[operator]
                passes = [
                    model.head(model.dropout_layer(feats))[..., :h, :w]  # type: ignore[operator]
                    for _ in range(k)
                ]
            else:
                passes = [model(x) for _ in range(k)]
        probs = torch.stack(passes).float().softmax(2)  # [K, B, C, H, W]
        _, b, c, _, _ = probs.shape
        flat = probs.permute(0, 1, 3, 4, 2).reshape(k, -1, c)
        scores = strategy.score(StrategyInputs(n_pool=int(flat.shape[1]), mc_probs_K_N_C=flat))  # type: ignore[attr-defined]
        return scores.reshape(b, h, w), probs.mean(0).argmax(1)

    fork = [device] if device.type == "cuda" else []
    with eval_mode(model), autocast_context(device), torch.random.fork_rng(devices=fork):
        torch.manual_seed(seed)
        return _score_pixels(
            _as_source(images), device, max(1, batch_size // k), score_batch, reducer, keep=keep
        )


# Sections per chunk when tracked pixel counts are scored and reduced (bounds the float64 temporaries).
_COUNT_CHUNK = 64


def _pixel_count_scores(
    strategy: Strategy, switches_N_H_W: torch.Tensor, reducer: PixelScoreReducer, pred_N_H_W: torch.Tensor
) -> None:
    """The strategy's elementwise ``score`` of every tracked pixel count, streamed into ``reducer``."""
    n = int(switches_N_H_W.shape[0])
    for sl in iter_batches(n, _COUNT_CHUNK):
        counts = switches_N_H_W[sl]
        b, h, w = counts.shape
        flat = counts.reshape(-1)
        scores = strategy.score(StrategyInputs(n_pool=int(flat.shape[0]), switches_N=flat))  # type: ignore[attr-defined]
        reducer.update(sl, scores.reshape(b, h, w), pred_N_H_W[sl])


def tracked_switch_scores(
    tracker: EventTracker, num_classes: int, options: SegmentationOptions
) -> torch.Tensor:
    """The reduced switch counts of a pixel tracker of shape ``(P, H, W)``: float64 ``[P]`` on its device.

    A section the tracker never observed scores 0, as an unobserved sample's switch count is 0.
    """
    switches = tracker.switches
    if switches.ndim != 3:
        raise ConfigError(
            f"segmentation tracking expected pixel switch counts [P, H, W], got {tuple(switches.shape)}; "
            "does the model predict per pixel?"
        )
    return reduce_pixel_scores(
        switches,
        reduction=options.reduction,
        top_q=options.top_q,
        pred_N_H_W=tracker.read("prediction"),
        num_classes=num_classes,
    )


@dataclass
class SegmentationQueryInputs:
    """What :func:`segmentation_strategy_inputs` computed: the strategy inputs plus what the round stores.

    Attributes:
        inputs: the :class:`StrategyInputs` the strategy selects from.
        form: the strategy's :func:`segmentation_form`.
        switch_scores: float64 ``[P]`` reduced switch counts when the pool was tracked, else ``None``.
    """

    inputs: StrategyInputs
    form: SegmentationForm
    switch_scores: torch.Tensor | None


def segmentation_strategy_inputs(
    model: nn.Module | None,
    strategy: Strategy,
    *,
    pool: DataSource,
    labeled: DataSource,
    pool_indices: np.ndarray,
    num_classes: int,
    options: SegmentationOptions,
    tracker: EventTracker | None = None,
    batch_size: int | None = None,
    mc_samples: int = 20,
    mc_seed: int = 0,
    embedding_layer: str | None = None,
) -> SegmentationQueryInputs:
    """The inputs ``strategy`` selects from on a segmentation pool.

    Args:
        model: the round's trained segmenter (``None`` only for forms that need none: ``none``,
            ``image-scores``).
        strategy: the strategy (see :func:`segmentation_form`).
        pool: the candidate sections (uint8 in-memory images, or a lazy source), in pool order.
        labeled: the labelled sections (``coreset`` embeds them).
        pool_indices: int64 ``[P]`` dataset indices of the candidates (read by ``scores_file`` strategies).
        num_classes: K.
        options: the reduction settings.
        tracker: the pool's pixel :class:`~forgetting.events.EventTracker` of shape ``(P, H, W)``, when the
            pool was observed while the model trained.
        batch_size: sections per inference batch (default :func:`pixel_batch_size`).
        mc_samples, mc_seed: MC-dropout passes and the seed of their masks (``pixel-mc`` strategies).
        embedding_layer: the layer whose output is the embedding (``coreset``); default the zoo's ``embed``.
    """
    form = segmentation_form(strategy)
    n_pool = len(pool)
    inputs = StrategyInputs(n_pool=n_pool)
    inputs.pool_indices_N = torch.from_numpy(np.asarray(pool_indices, dtype=np.int64))
    switch_scores = None
    if tracker is not None:
        switch_scores = tracked_switch_scores(tracker, num_classes, options)
    if form in ("none", "image-scores"):
        return SegmentationQueryInputs(inputs, form, switch_scores)
    if model is None:
        raise ConfigError(f"strategy {strategy.name!r} needs the round's trained model")
    device = model_device(model)
    h, w = pool.input_shape[-2:]
    batch_size = batch_size or pixel_batch_size(device, h, w, model=model)
    reducer = PixelScoreReducer(n_pool, num_classes, reduction=options.reduction, top_q=options.top_q)
    if form == "pixel-switches":
        if tracker is None:
            raise ConfigError(
                f"strategy {strategy.name!r} needs the pool's switch counts, but the pool was not tracked"
            )
        _pixel_count_scores(strategy, tracker.switches, reducer, tracker.read("prediction"))
        inputs.scores_N = reducer.finalize()
    elif form == "pixel-probs":
        _pixel_probability_scores(model, pool, strategy, reducer, batch_size=batch_size)
        inputs.scores_N = reducer.finalize()
    elif form == "pixel-mc":
        _pixel_mc_scores(
            model, pool, strategy, reducer, mc_samples=mc_samples, batch_size=batch_size, seed=mc_seed
        )
        inputs.scores_N = reducer.finalize()
    elif form == "embeddings":
        inputs.embeddings_N_D = predict(
            model, pool, probs=False, embeddings=True, batch_size=batch_size, embedding_layer=embedding_layer
        ).embeddings_N_D
        inputs.labeled_embeddings_L_D = predict(
            model,
            labeled,
            probs=False,
            embeddings=True,
            batch_size=batch_size,
            embedding_layer=embedding_layer,
        ).embeddings_N_D
    return SegmentationQueryInputs(inputs, form, switch_scores)


def queried_section_arrays(
    model: nn.Module | None,
    strategy: Strategy,
    form: SegmentationForm,
    *,
    pool: DataSource,
    positions: np.ndarray,
    masks: torch.Tensor | None = None,
    tracker: EventTracker | None = None,
    batch_size: int | None = None,
    mc_samples: int = 20,
    mc_seed: int = 0,
) -> dict[str, np.ndarray]:
    """What a segmentation round stores about its queried sections (``RoundRecord.query_arrays``).

    Args:
        pool: the candidate sections, in pool order.
        positions: int64 ``[n]`` the selected positions into the pool.
        masks: int64 ``[n, H, W]`` the revealed masks of the picks (simulation), or ``None`` where they are
            unknown (a labelling project's unlabelled images).
        tracker: the pool's pixel tracker, if it was observed.
        mc_samples, mc_seed: as for :func:`segmentation_strategy_inputs` (``pixel-mc`` score maps; the
            dropout masks differ from the pool pass, which scored other sections in the same stream).

    Returns:
        ``images`` uint8 ``[n, C, H, W]`` (in-memory pools only: a lazy pool's inputs are the user's),
        ``masks`` int16 ``[n, H, W]`` (only with ``masks``); with a model, ``pred`` uint8 ``[n, H, W]`` and
        ``pixel_scores`` float16 ``[n, H, W]`` (the strategy's per-pixel score; absent for strategies without
        one); ``switch_maps`` uint8 ``[n, H, W]`` (saturating at 255; only with a tracker).
    """
    positions = np.asarray(positions, dtype=np.int64)
    chosen = pool.subset(positions)
    out: dict[str, np.ndarray] = {}
    tensors = chosen.as_tensors()
    if tensors is not None:
        out["images"] = tensors[0].cpu().numpy().astype(np.uint8)
    if masks is not None:
        out["masks"] = masks.cpu().numpy().astype(np.int16)
    if model is not None:
        device = model_device(model)
        h, w = pool.input_shape[-2:]
        batch_size = batch_size or pixel_batch_size(device, h, w, model=model)
        if form == "pixel-probs":
            scores, pred = _pixel_probability_scores(
                model, chosen, strategy, None, batch_size=batch_size, keep=True
            )
            assert scores is not None and pred is not None
            out["pixel_scores"] = scores.cpu().numpy().astype(np.float16)
        elif form == "pixel-mc":
            scores, _ = _pixel_mc_scores(
                model,
                chosen,
                strategy,
                None,
                mc_samples=mc_samples,
                batch_size=batch_size,
                seed=mc_seed,
                keep=True,
            )
            assert scores is not None
            out["pixel_scores"] = scores.cpu().numpy().astype(np.float16)
            pred = predict_segmentation(model, chosen, batch_size=batch_size)[0]
        else:
            pred = predict_segmentation(model, chosen, batch_size=batch_size)[0]
        out["pred"] = pred.clamp(0, _UINT8_MAX).cpu().numpy().astype(np.uint8)
    if tracker is not None:
        switches = tracker.switches
        pos_t = torch.from_numpy(positions).to(switches.device)
        picked = switches[pos_t].to(torch.int32)
        if form == "pixel-switches":
            out["pixel_scores"] = picked.cpu().numpy().astype(np.float16)
        out["switch_maps"] = picked.clamp(0, _UINT8_MAX).cpu().numpy().astype(np.uint8)
    return out


def segmentation_eval_metrics(
    model: nn.Module,
    data: DataSource,
    *,
    num_classes: int,
    class_names: Sequence[str] | None = None,
    ignore_index: int | None = None,
    batch_size: int | None = None,
) -> dict[str, float]:
    """The metrics a segmentation round records per eval set (eval mode, one host transfer at the end).

    Returns:
        ``miou``, ``pixel_accuracy``, ``mean_class_accuracy``, ``fwiou`` and, per class name,
        ``iou/<name>`` and ``class_accuracy/<name>`` (NaN for a class absent from ``data`` and never
        predicted, or without pixels).
    """
    h, w = data.input_shape[-2:]
    batch_size = batch_size or pixel_batch_size(model_device(model), h, w, model=model)
    m = evaluate_segmentation(
        model, data, num_classes=num_classes, ignore_index=ignore_index, batch_size=batch_size
    )
    names = list(class_names) if class_names is not None else [str(c) for c in range(num_classes)]
    if len(names) != num_classes:
        raise ConfigError(f"{len(names)} class names for {num_classes} classes")
    out = {
        "miou": m.mean_iou,
        "pixel_accuracy": m.pixel_accuracy,
        "mean_class_accuracy": m.mean_class_accuracy,
        "fwiou": m.fw_iou,
    }
    out.update({f"iou/{n}": float(v) for n, v in zip(names, m.iou, strict=True)})
    out.update({f"class_accuracy/{n}": float(v) for n, v in zip(names, m.class_accuracy, strict=True)})
    return out
