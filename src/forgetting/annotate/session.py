"""One query on a user's images: train on the labelled ones, track the unlabelled ones, rank them.

This is one round of :func:`forgetting.loop.run_active_learning` without an oracle: it uses the loop's own
building blocks (:func:`~forgetting.loop.plan_strategy`, :func:`~forgetting.loop.draw_candidates`,
:func:`~forgetting.loop.train_round`, :func:`~forgetting.loop.query_round`), so a strategy behaves exactly as
in the simulations, and the same seeds make the same choices. It knows nothing of files.

Cold start. Every registered strategy but ``random`` ranks with a model trained on labels. With no labels
yet, use ``random`` (a seeded uniform draw) or ``kcenter-pixels`` (greedy k-center on the raw pixels,
downsampled to at most 16x16: a spread-out, class-agnostic first batch). Both need no model and may be used in
any round; ``kcenter-pixels`` then also keeps away from the images already labelled.

Segmentation. :func:`rank_sections` is the segmentation round of the loop without an oracle: the model trains
on the labelled masks (class weights from them, the ignore index honoured), the unlabelled images are tracked
per pixel when the strategy needs switch counts, and
:func:`~forgetting.segmentation.active.segmentation_strategy_inputs` reduces the pixel scores to one score
per image for the strategy's ``select``. The strategies of
:func:`~forgetting.segmentation.active.segmentation_strategies` work, plus ``kcenter-pixels``; the others
fail with the list.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from forgetting.data.dataset import Split
from forgetting.devices import resolve_device
from forgetting.exceptions import ConfigError, PoolExhaustedError, ProjectError
from forgetting.inference import predict
from forgetting.loop import (
    LoopConfig,
    derive_seed,
    draw_candidates,
    mc_seed,
    plan_strategy,
    query_round,
    query_seed,
    train_round,
)
from forgetting.records import TrainRecord
from forgetting.strategies import Input, StrategyInputs, k_center_greedy, list_strategies

__all__ = [
    "COLD_START_STRATEGIES",
    "PIXEL_KCENTER",
    "Ranking",
    "pixel_features",
    "rank_pool",
    "rank_sections",
    "segmentation_query_strategies",
]

logger = logging.getLogger(__name__)

PIXEL_KCENTER = "kcenter-pixels"
#: Strategies that need no labels (and no model): usable for the first query of a project.
COLD_START_STRATEGIES: tuple[str, ...] = ("random", PIXEL_KCENTER)
_PIXEL_SIDE = 16
_PIXEL_QUERY = 100  # derive_seed purpose of the kcenter-pixels draw, apart from the loop's purposes


@dataclass
class Ranking:
    """The ranked unlabelled images of one query.

    Attributes:
        indices: int64 ``[n]`` rows of the image tensor, in selection order.
        scores: float64 ``[n]`` the strategy's scores (NaN where it has none).
        predicted: int64 ``[n]`` the model's classes, or ``None`` without a model.
        confidence: float64 ``[n]`` the predicted class's probability, or ``None`` without a model.
        n_pool: the number of unlabelled images the strategy chose from (after ``pool_subsample``).
        train: the training record, or ``None`` without a model.
        seconds: wall time per phase (``train``, ``track``, ``query``).
        dynamics: ``switches`` (int16 ``[P]``; segmentation: float32 ``[P]`` reduced pixel switch counts) and
            ``pool`` (int64 ``[P]`` rows) when the pool was tracked.
        maps: segmentation only, aligned with ``indices``: ``pred`` (uint8 ``[n, H, W]`` predicted classes),
            ``pixel_scores`` (float16 ``[n, H, W]``, the strategy's per-pixel score when it is not the switch
            count: entropy, margin, least confidence) and ``switch_maps`` (uint8 ``[n, H, W]`` switch counts,
            saturating at 255, when the pool was tracked).
    """

    indices: np.ndarray
    scores: np.ndarray
    predicted: np.ndarray | None
    confidence: np.ndarray | None
    n_pool: int
    train: TrainRecord | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    dynamics: dict[str, np.ndarray] = field(default_factory=dict)
    maps: dict[str, np.ndarray] = field(default_factory=dict)


def known_strategies() -> list[str]:
    """The strategy names a query accepts: the registry's plus :data:`PIXEL_KCENTER`."""
    return sorted([*list_strategies(), PIXEL_KCENTER])


def segmentation_query_strategies() -> list[str]:
    """The strategy names a segmentation project's query accepts (the segmentation strategies plus
    :data:`PIXEL_KCENTER`)."""
    from forgetting.segmentation.active import segmentation_strategies

    return sorted([*segmentation_strategies(), PIXEL_KCENTER])


def pixel_features(images_N_C_H_W: torch.Tensor, side: int = _PIXEL_SIDE) -> torch.Tensor:
    """Raw-pixel features for class-agnostic selection: ``float32 [N, C * s * s]`` in ``[0, 1]`` after area
    averaging to at most ``side`` x ``side`` (``s = min(side, H, W)``)."""
    h, w = images_N_C_H_W.shape[-2:]
    out = (min(side, int(h)), min(side, int(w)))
    parts = []
    for start in range(0, int(images_N_C_H_W.shape[0]), 4096):
        block = images_N_C_H_W[start : start + 4096].float().div_(255.0)
        parts.append(F.adaptive_avg_pool2d(block, out).flatten(1))
    return torch.cat(parts) if parts else torch.zeros((0, int(images_N_C_H_W.shape[1]) * out[0] * out[1]))


def _candidates(
    images: torch.Tensor, labeled: np.ndarray, config: LoopConfig, n: int, round_: int, caller: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """``(order, labeled sorted, candidate rows, n capped)`` for a query over ``images``; ``order`` sorts
    the caller's ``labeled`` (apply it to labels or masks).

    Raises:
        ConfigError: ``labeled`` holds duplicate rows.
        PoolExhaustedError: every image is labelled.
    """
    n_images = int(images.shape[0])
    labeled = np.asarray(labeled, dtype=np.int64)
    order = np.argsort(labeled, kind="stable")
    labeled = labeled[order]
    is_labeled = np.zeros(n_images, dtype=bool)
    is_labeled[labeled] = True
    if is_labeled.sum() != labeled.size:
        raise ConfigError(f"{caller}: `labeled` holds duplicate rows")
    pool = draw_candidates(np.flatnonzero(~is_labeled).astype(np.int64), config, round_)
    if pool.size == 0:
        raise PoolExhaustedError(f"all {n_images} images are labelled; there is nothing left to query")
    if n > pool.size:
        logger.warning("only %d unlabelled images are left to choose from; returning all of them", pool.size)
        n = int(pool.size)
    return order, labeled, pool, n


def _is_pixel_kcenter(config: LoopConfig) -> bool:
    """Whether the query uses the model-free :data:`PIXEL_KCENTER` cold start (which takes no options)."""
    if config.strategy.strip().lower().replace("_", "-") != PIXEL_KCENTER:
        return False
    if config.strategy_options:
        raise ConfigError(f"strategy {PIXEL_KCENTER!r} takes no options")
    return True


def rank_pool(
    images: torch.Tensor,
    labeled: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    config: LoopConfig,
    n: int,
    round_: int,
) -> Ranking:
    """Rank the unlabelled images and pick ``n`` of them (fewer if fewer remain).

    Args:
        images: uint8 ``[N, C, H, W]`` every image of the project (CPU).
        labeled: int64 ``[L]`` distinct rows of ``images`` that have labels.
        labels: int64 ``[L]`` their class ids in ``0..num_classes-1``.
        num_classes: C, the number of classes the model predicts.
        config: model, training, tracking and strategy settings; ``config.seed`` is the query seed.
        n: how many images to pick.
        round_: the round number; with the seed it fixes every random choice (initialisation, batch order,
            tracking subsets, candidate subsample, selection).

    Raises:
        PoolExhaustedError: every image is labelled.
        ProjectError: the strategy needs labels and there are none, or needs the pool's true labels.
    """
    device = resolve_device(config.device)
    order, labeled, pool, n = _candidates(images, labeled, config, n, round_, "rank_pool")
    labels = np.asarray(labels, dtype=np.int64)[order]
    if _is_pixel_kcenter(config):
        return _rank_by_pixels(images, labeled, pool, n, config.seed, round_)

    plan = plan_strategy(config, int(images.shape[1]), num_classes)
    if Input.POOL_LABELS in plan.requires:
        raise ProjectError(
            f"strategy {config.strategy!r} needs the true labels of the unlabelled images (it is an oracle "
            "for simulations); choose another, e.g. gauss, switch or entropy"
        )
    uses_precomputed = bool(getattr(plan.strategy, "uses_precomputed", False))
    model_inputs = {Input.PROBS, Input.MC_PROBS, Input.EMBEDDINGS}
    needs_model = (
        plan.track
        or bool(plan.requires & model_inputs)
        or (Input.DYNAMICS in plan.requires and not uses_precomputed)
    )
    if needs_model and labeled.size == 0:
        raise ProjectError(
            f"strategy {config.strategy!r} ranks images with a model trained on labels, and the project has "
            "none yet. Either import the labels you already have (`forgetting label DIR --import FILE`), "
            f"or start with a class-agnostic cold start: --strategy {' or '.join(COLD_START_STRATEGIES)}"
        )

    images_dev = images.to(device)
    targets = torch.from_numpy(labels)
    pool_t = torch.from_numpy(pool).to(device)
    labeled_t = torch.from_numpy(labeled).to(device)
    model = None
    observer = None
    train_record = None
    seconds = {"train": 0.0, "track": 0.0}
    if needs_model:
        present = np.unique(labels).size
        if present < 2:
            logger.warning(
                "the labelled images cover %d class(es); the model can only tell classes apart it has seen",
                present,
            )
        model, train_record, observer = train_round(
            config,
            round_,
            Split(images_dev[labeled_t], targets.to(device)),
            num_classes,
            device=device,
            pool_images=images_dev[pool_t] if plan.track else None,
        )
        seconds = {"train": train_record.seconds, "track": train_record.track_seconds}
    t0 = time.perf_counter()
    selection = query_round(
        model,
        plan,
        config,
        round_,
        n,
        images=images_dev,
        pool=pool,
        pool_t=pool_t,
        labeled_t=labeled_t,
        observer=observer,
    )
    seconds["query"] = time.perf_counter() - t0
    chosen = pool[np.asarray(selection.indices, dtype=np.int64)]
    predicted = confidence = None
    if model is not None:
        probs = predict(model, images_dev[torch.from_numpy(chosen).to(device)]).probs_N_C
        assert probs is not None
        top = probs.float().max(dim=1)
        predicted = top.indices.cpu().numpy().astype(np.int64)
        confidence = top.values.cpu().numpy().astype(np.float64)
    dynamics: dict[str, np.ndarray] = {}
    if observer is not None:
        dynamics = {
            "switches": observer.tracker.switches.cpu().numpy().astype(np.int16),
            "pool": pool,
        }
    return Ranking(
        indices=chosen,
        scores=np.asarray(selection.scores, dtype=np.float64),
        predicted=predicted,
        confidence=confidence,
        n_pool=int(pool.size),
        train=train_record,
        seconds=seconds,
        dynamics=dynamics,
    )


def _rank_by_pixels(
    images: torch.Tensor, labeled: np.ndarray, pool: np.ndarray, n: int, seed: int, round_: int
) -> Ranking:
    """Greedy k-center on raw pixels, away from the labelled images (a seeded first pick without any)."""
    t0 = time.perf_counter()
    features = pixel_features(images)
    centers = features[torch.from_numpy(labeled)] if labeled.size else None
    picked, distances = k_center_greedy(
        features[torch.from_numpy(pool)],
        n,
        seed=derive_seed(seed, round_, _PIXEL_QUERY),
        centers_L_D=centers,
        return_scores=True,
    )
    return Ranking(
        indices=pool[np.asarray(picked, dtype=np.int64)],
        scores=np.asarray(distances, dtype=np.float64),  # distance to the nearest centre when picked
        predicted=None,
        confidence=None,
        n_pool=int(pool.size),
        seconds={"train": 0.0, "track": 0.0, "query": time.perf_counter() - t0},
    )


def rank_sections(
    images: torch.Tensor,
    labeled: np.ndarray,
    masks: torch.Tensor,
    num_classes: int,
    config: LoopConfig,
    n: int,
    round_: int,
) -> Ranking:
    """Rank the unlabelled images of a segmentation project and pick ``n`` of them (fewer if fewer remain).

    Args:
        images: uint8 ``[N, C, H, W]`` every image of the project (CPU).
        labeled: int64 ``[L]`` distinct rows of ``images`` that have masks.
        masks: int64 ``[L, H, W]`` their masks: class ids ``0..num_classes-1`` or
            ``config.segmentation.ignore_index``.
        num_classes: K.
        config: model, training, tracking, strategy and ``segmentation`` settings (reduction, ignore index,
            class weights); ``config.seed`` is the query seed.
        n: how many images to pick.
        round_: the round number; with the seed it fixes every random choice.

    Returns:
        A :class:`Ranking` with ``maps`` for the picked images (without a model: none).

    Raises:
        PoolExhaustedError: every image is labelled.
        ConfigError: the strategy has no segmentation form (the message lists those that work).
        ProjectError: the strategy needs a model and there are no masks yet.
    """
    from forgetting.segmentation.active import (
        SegmentationOptions,
        query_sections,
        segmentation_form,
    )

    device = resolve_device(config.device)
    labeled = np.asarray(labeled, dtype=np.int64)
    if masks.ndim != 3 or int(masks.shape[0]) != labeled.size or masks.shape[1:] != images.shape[2:]:
        raise ConfigError(
            f"rank_sections: masks must be int64 [L, H, W] with L = {labeled.size} and H, W of the images "
            f"{tuple(images.shape[2:])}; got {tuple(masks.shape)}"
        )
    order, labeled, pool, n = _candidates(images, labeled, config, n, round_, "rank_sections")
    masks = masks[torch.from_numpy(order)] if labeled.size else masks
    if _is_pixel_kcenter(config):
        return _rank_by_pixels(images, labeled, pool, n, config.seed, round_)

    options = config.segmentation or SegmentationOptions()
    plan = plan_strategy(config, int(images.shape[1]), num_classes)
    try:
        form = segmentation_form(plan.strategy)
    except ConfigError as exc:
        raise ConfigError(f"{exc}, {PIXEL_KCENTER}") from None
    needs_model = plan.track or form in ("pixel-probs", "pixel-switches", "embeddings")
    if needs_model and labeled.size == 0:
        raise ProjectError(
            f"strategy {config.strategy!r} ranks images with a model trained on masks, and the project has "
            "none yet. Either import the masks you already have (`forgetting label DIR MASKS`), or start "
            f"with a class-agnostic cold start: --strategy {' or '.join(COLD_START_STRATEGIES)}"
        )

    images_dev = images.to(device)
    pool_t = torch.from_numpy(pool).to(device)
    labeled_t = torch.from_numpy(labeled).to(device)
    seconds = {"train": 0.0, "track": 0.0}
    if not needs_model:  # random, or precomputed image scores: no model, no maps
        t0 = time.perf_counter()
        inputs = StrategyInputs(n_pool=int(pool.size))
        if form == "image-scores":
            inputs.switches_N = plan.strategy.precomputed_scores(pool)  # type: ignore[attr-defined]
        selection = plan.strategy.select(inputs, n, seed=query_seed(config, round_))
        seconds["query"] = time.perf_counter() - t0
        return Ranking(
            indices=pool[np.asarray(selection.indices, dtype=np.int64)],
            scores=np.asarray(selection.scores, dtype=np.float64),
            predicted=None,
            confidence=None,
            n_pool=int(pool.size),
            seconds=seconds,
        )

    _warn_missing_classes(masks, num_classes, options.ignore_index)
    model, train_record, observer = train_round(
        config,
        round_,
        Split(images_dev[labeled_t], masks.to(device=device, dtype=torch.int64)),
        num_classes,
        device=device,
        pool_images=images_dev[pool_t] if plan.track else None,
    )
    seconds = {"train": train_record.seconds, "track": train_record.track_seconds}
    tracker = observer.tracker if observer is not None else None
    t0 = time.perf_counter()
    query = query_sections(
        model,
        plan.strategy,
        n,
        images=images_dev,
        pool=pool,
        pool_t=pool_t,
        labeled_t=labeled_t,
        num_classes=num_classes,
        options=options,
        seed=query_seed(config, round_),
        tracker=tracker,
        batch_size=config.eval_batch_size,
        mc_samples=config.mc_samples,
        mc_seed=mc_seed(config, round_),
    )
    seconds["query"] = time.perf_counter() - t0
    positions, arrays = query.positions, query.arrays
    maps = {key: arrays[key] for key in ("pred", "pixel_scores", "switch_maps") if key in arrays}
    if query.form == "pixel-switches":  # the pixel scores are the switch counts: keep one copy
        maps.pop("pixel_scores", None)
    dynamics: dict[str, np.ndarray] = {}
    if query.switch_scores is not None:
        dynamics = {"switches": query.switch_scores.cpu().numpy().astype(np.float32), "pool": pool}
    return Ranking(
        indices=pool[positions],
        scores=query.scores,
        predicted=None,
        confidence=None,
        n_pool=int(pool.size),
        train=train_record,
        seconds=seconds,
        dynamics=dynamics,
        maps=maps,
    )


def _warn_missing_classes(masks: torch.Tensor, num_classes: int, ignore_index: int | None) -> None:
    """Log the classes no labelled pixel shows (the model cannot learn them; their class weight is 0)."""
    flat = masks.reshape(-1)
    valid = (flat >= 0) & (flat < num_classes)
    if ignore_index is not None:
        valid &= flat != ignore_index
    counts = torch.bincount(flat[valid], minlength=num_classes)
    absent = [str(c) for c in torch.nonzero(counts == 0).flatten().tolist()]
    if absent:
        logger.warning(
            "no labelled pixel shows class id(s) %s; the model cannot predict them until masks contain them",
            ", ".join(absent),
        )
