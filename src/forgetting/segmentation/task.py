"""Segmentation as a :class:`~forgetting.tasks.base.Task`: one class per pixel.

Elements are pixels: the pool tracker has shape ``(P, H, W)``, strategies score every pixel (their own
elementwise ``score`` on each pixel's softmax, MC samples or switch count) and a
:class:`~forgetting.segmentation.active.PixelScoreReducer` turns those into one score per section; rounds
train with class weights from the labelled masks and the ignore index, and record mIoU with per-class IoU and
accuracy. This module depends on the task interface; the loop and the labelling projects never import it
(the task registry names it by import path).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from forgetting.data.source import DataSource
from forgetting.events import EventTracker
from forgetting.segmentation.active import (
    _form_of,
    queried_section_arrays,
    segmentation_eval_metrics,
    segmentation_form,
    segmentation_strategy_inputs,
)
from forgetting.segmentation.training import class_weights_from_masks
from forgetting.settings import ClassWeighting, SegmentationOptions
from forgetting.strategies import Strategy
from forgetting.tasks.base import PoolContext, PoolInputs, Task
from forgetting.training import LabeledSet

__all__ = ["SegmentationTask"]


class SegmentationTask(Task):
    """One class per pixel (targets int64 ``[N, H, W]`` masks).

    Args:
        num_classes: K.
        class_names: names of the per-class metrics (``iou/<name>``, ``class_accuracy/<name>``).
        options: ignore index, reduction, top-q fraction and class weighting; or give them as keywords.
        ignore_index, reduction, top_q, class_weights: the fields of :class:`SegmentationOptions` (used when
            ``options`` is ``None``).

    Stored per round: per section, the pool's reduced pixel switch counts (``switches``, float32 ``[P]``) and
    its observation count (``observations``); per queried section its ``images``, revealed ``masks``, the
    model's ``pred``, the strategy's ``pixel_scores`` and the ``switch_maps`` (see
    :func:`~forgetting.segmentation.active.queried_section_arrays`).
    """

    name: ClassVar[str] = "segmentation"
    headline_metric: ClassVar[str] = "miou"
    element: ClassVar[str] = "pixel"

    def __init__(
        self,
        num_classes: int,
        *,
        class_names: Sequence[str] | None = None,
        options: SegmentationOptions | None = None,
        ignore_index: int | None = None,
        reduction: str = "mean",
        top_q: float = 0.1,
        class_weights: ClassWeighting | Sequence[float] = "median",
    ) -> None:
        super().__init__(num_classes, class_names=class_names)
        self.options = options or SegmentationOptions(
            ignore_index=ignore_index,
            reduction=reduction,  # type: ignore[arg-type]
            top_q=top_q,
            class_weights=class_weights if isinstance(class_weights, str) else list(class_weights),
        )

    def __repr__(self) -> str:
        return f"SegmentationTask(num_classes={self.num_classes}, options={self.options})"

    def support(self, strategy: Strategy) -> str | None:
        """The strategy's :func:`~forgetting.segmentation.active.segmentation_form`, or ``None``."""
        return _form_of(strategy)

    def check_strategy(self, strategy: Strategy) -> str:
        return segmentation_form(strategy)

    def labeled_set(self, data: DataSource, *, seed: int, device: torch.device) -> LabeledSet:
        """The labelled sections with class weights from their masks and the ignore index."""
        weights = class_weights_from_masks(
            data.read_targets(),
            self.num_classes,
            scheme=self.options.class_weights,
            ignore_index=self.options.ignore_index,
        )
        return LabeledSet(
            data,
            self.num_classes,
            seed,
            device,
            class_weights=weights,
            ignore_index=self.options.ignore_index,
        )

    def batch_size(
        self, device: torch.device, input_shape: tuple[int, ...], configured: int | None
    ) -> int | None:
        """``configured``, else ``None``: each pass then takes
        :func:`~forgetting.segmentation.active.pixel_batch_size` of the sections and the round's model."""
        return configured

    @property
    def observe_ignore_index(self) -> int | None:
        return self.options.ignore_index

    def evaluate(self, model: nn.Module, data: DataSource, *, batch_size: int | None) -> dict[str, float]:
        """mIoU, pixel accuracy, mean class accuracy, FWIoU and per-class IoU and accuracy."""
        return segmentation_eval_metrics(
            model,
            data,
            num_classes=self.num_classes,
            class_names=self.class_names,
            ignore_index=self.options.ignore_index,
            batch_size=batch_size,
        )

    def pool_inputs(self, model: nn.Module | None, strategy: Strategy, ctx: PoolContext) -> PoolInputs:
        """Pixel scores reduced per section (or pooled embeddings, or precomputed section scores)."""
        computed = segmentation_strategy_inputs(
            model,
            strategy,
            pool=ctx.pool,
            labeled=ctx.labeled,
            pool_indices=ctx.pool_indices,
            num_classes=self.num_classes,
            options=self.options,
            tracker=ctx.tracker,
            batch_size=ctx.batch_size,
            mc_samples=ctx.mc_samples,
            mc_seed=ctx.mc_seed,
            embedding_layer=ctx.embedding_layer,
        )
        extras = {} if computed.switch_scores is None else {"switch_scores": computed.switch_scores}
        return PoolInputs(computed.inputs, computed.form, extras)

    def query_arrays(
        self,
        model: nn.Module | None,
        strategy: Strategy,
        ctx: PoolContext,
        positions: np.ndarray,
        computed: PoolInputs,
    ) -> dict[str, np.ndarray]:
        masks = ctx.pool.read_targets(positions) if ctx.pool.has_targets else None
        return queried_section_arrays(
            model,
            strategy,
            computed.form,  # type: ignore[arg-type]
            pool=ctx.pool,
            positions=positions,
            masks=masks,
            tracker=ctx.tracker,
            batch_size=ctx.batch_size,
            mc_samples=ctx.mc_samples,
            mc_seed=ctx.mc_seed,
        )

    def dynamics(self, tracker: EventTracker, computed: PoolInputs | None, *, labels: bool) -> dict:
        """Per section: the reduced pixel switch counts (what GauSS fits) and the observation count."""
        if computed is None or "switch_scores" not in computed.extras:
            return {}
        obs = tracker.observations.reshape(tracker.n, -1).amax(1)
        return {
            "switches": computed.extras["switch_scores"].cpu().numpy().astype(np.float32),
            "observations": obs.cpu().numpy().astype(np.int32),
        }
