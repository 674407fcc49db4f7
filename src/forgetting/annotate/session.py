"""One query on a user's images: train on the labelled ones, track the unlabelled ones, rank them.

This is one round of :func:`forgetting.loop.run_active_learning` without an oracle: it uses the loop's own
building blocks (:func:`~forgetting.loop.plan_strategy`, :func:`~forgetting.loop.draw_candidates`,
:func:`~forgetting.loop.train_round`, :func:`~forgetting.loop.query_round`), so a strategy behaves exactly as
in the simulations, and the same seeds make the same choices. It knows nothing of files.

Cold start. Every registered strategy but ``random`` ranks with a model trained on labels. With no labels
yet, use ``random`` (a seeded uniform draw) or ``kcenter-pixels`` (greedy k-center on the raw pixels,
downsampled to at most 16x16: a spread-out, class-agnostic first batch). Both need no model and may be used in
any round; ``kcenter-pixels`` then also keeps away from the images already labelled.

Tasks. The project's :class:`~forgetting.tasks.base.Task` decides everything that depends on the kind of
labels: the losses (class weights from the labelled masks, an ignore index), the elements that are tracked
and scored (samples or pixels), how element scores become one score per image, and the arrays shown with
each pick. The strategies of :meth:`~forgetting.tasks.base.Task.supported_strategies` work, plus
``kcenter-pixels``; the others fail with the list.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from forgetting.data.source import TensorSource
from forgetting.devices import resolve_device
from forgetting.exceptions import ConfigError, PoolExhaustedError, ProjectError
from forgetting.exports import sample_table
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
from forgetting.strategies import Input, k_center_greedy, list_strategies
from forgetting.tasks import PoolContext, Task

__all__ = [
    "COLD_START_STRATEGIES",
    "PIXEL_KCENTER",
    "Ranking",
    "known_strategies",
    "pixel_features",
    "query_strategies",
    "rank_pool",
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
        n_pool: the number of unlabelled images the strategy chose from (after ``pool_subsample``).
        train: the training record, or ``None`` without a model.
        seconds: wall time per phase (``train``, ``track``, ``query``).
        dynamics: ``switches`` (classification: int16 ``[P]``; segmentation: float32 ``[P]`` reduced pixel
            switch counts) and ``pool`` (int64 ``[P]`` rows) when the pool was tracked.
        arrays: the task's arrays about the picks, aligned with ``indices`` (none without a model):
            classification ``predicted`` (int64 ``[n]``) and ``confidence`` (float32 ``[n]``); segmentation
            ``pred`` (uint8 ``[n, H, W]`` predicted classes), ``pixel_scores`` (float16 ``[n, H, W]``, the
            strategy's per-pixel score when it is not the switch count) and ``switch_maps`` (uint8
            ``[n, H, W]`` switch counts, saturating at 255, when the pool was tracked).
        samples: the per-sample table of the tracked pool (:func:`forgetting.exports.sample_table`;
            ``sample_id`` = the image's row; a per-sample summary of the pixels for segmentation), or empty.
    """

    indices: np.ndarray
    scores: np.ndarray
    n_pool: int
    train: TrainRecord | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    dynamics: dict[str, np.ndarray] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    samples: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def predicted(self) -> np.ndarray | None:
        """int64 ``[n]`` the model's class of each pick (classification), or ``None``."""
        return self.arrays.get("predicted")

    @property
    def confidence(self) -> np.ndarray | None:
        """float64 ``[n]`` the predicted class's probability (classification), or ``None``."""
        conf = self.arrays.get("confidence")
        return None if conf is None else conf.astype(np.float64)

    @property
    def maps(self) -> dict[str, np.ndarray]:
        """The per-pixel arrays of the picks (segmentation), keyed ``pred``, ``pixel_scores``,
        ``switch_maps``."""
        return {k: v for k, v in self.arrays.items() if k in ("pred", "pixel_scores", "switch_maps")}


def known_strategies() -> list[str]:
    """The strategy names a query accepts: the registry's plus :data:`PIXEL_KCENTER`."""
    return sorted([*list_strategies(), PIXEL_KCENTER])


def query_strategies(task: Task) -> list[str]:
    """The strategy names a project of ``task`` accepts: the strategies the task runs, plus
    :data:`PIXEL_KCENTER`."""
    return sorted([*task.supported_strategies(), PIXEL_KCENTER])


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
    targets: np.ndarray | torch.Tensor,
    task: Task,
    config: LoopConfig,
    n: int,
    round_: int,
) -> Ranking:
    """Rank the unlabelled images and pick ``n`` of them (fewer if fewer remain), for any task.

    Args:
        images: uint8 ``[N, C, H, W]`` every image of the project (CPU).
        labeled: int64 ``[L]`` distinct rows of ``images`` that have labels.
        targets: their targets, aligned with ``labeled``: int64 ``[L]`` class ids (classification) or
            ``[L, H, W]`` masks (segmentation, with the task's ignore index for unlabelled pixels).
        task: the project's :class:`~forgetting.tasks.base.Task` (its class count, losses, scoring).
        config: model, training, tracking and strategy settings; ``config.seed`` is the query seed.
        n: how many images to pick.
        round_: the round number; with the seed it fixes every random choice (initialisation, batch order,
            tracking subsets, candidate subsample, selection).

    Returns:
        A :class:`Ranking`; its ``arrays`` are the task's per-pick arrays (classification: ``predicted`` and
        ``confidence``; segmentation: the ``pred``, ``pixel_scores`` and ``switch_maps`` maps).

    Raises:
        PoolExhaustedError: every image is labelled.
        ConfigError: the task has no form of the strategy (the message lists those that work), or the
            targets do not match ``labeled``.
        ProjectError: the strategy needs labels and there are none, or needs the pool's true labels.
    """
    device = resolve_device(config.device)
    targets_t = torch.as_tensor(np.asarray(targets) if not isinstance(targets, torch.Tensor) else targets)
    labeled = np.asarray(labeled, dtype=np.int64)
    if int(targets_t.shape[0]) != labeled.size or (
        targets_t.ndim > 1 and tuple(targets_t.shape[1:]) != tuple(images.shape[2:])
    ):
        raise ConfigError(
            f"rank_pool: targets must have one entry per labelled row ({labeled.size}) and, for masks, the "
            f"images' H, W {tuple(images.shape[2:])}; got {tuple(targets_t.shape)}"
        )
    order, labeled, pool, n = _candidates(images, labeled, config, n, round_, "rank_pool")
    targets_t = targets_t[torch.from_numpy(order)].to(torch.int64) if labeled.size else targets_t.long()
    if _is_pixel_kcenter(config):
        return _rank_by_pixels(images, labeled, pool, n, config.seed, round_)

    try:
        plan = plan_strategy(config, task)
    except ConfigError as exc:
        if "support" not in str(exc):
            raise
        raise ConfigError(f"{exc}, {PIXEL_KCENTER}") from None
    if Input.POOL_LABELS in plan.requires:
        raise ProjectError(
            f"strategy {config.strategy!r} needs the true labels of the unlabelled images (it is an oracle "
            "for simulations); choose another, e.g. gauss, switch or entropy"
        )
    needs_model = plan.track or plan.needs_model
    if needs_model and labeled.size == 0:
        raise ProjectError(
            f"strategy {config.strategy!r} ranks images with a model trained on the labelled images, and the "
            "project has none yet. Either import the labels you already have (`forgetting label DIR FILE`), "
            f"or start with a class-agnostic cold start: --strategy {' or '.join(COLD_START_STRATEGIES)}"
        )

    images_dev = images.to(device)
    pool_rows = TensorSource(images_dev[torch.from_numpy(pool).to(device)])
    labeled_rows = TensorSource(images_dev[torch.from_numpy(labeled).to(device)], targets_t.to(device))
    model = None
    observer = None
    train_record = None
    seconds = {"train": 0.0, "track": 0.0}
    if needs_model:
        for warning in task.label_warnings(targets_t):
            logger.warning("%s", warning)
        model, train_record, observer = train_round(
            config,
            round_,
            task,
            labeled_rows,
            device=device,
            plan=plan,
            pool=pool_rows if plan.track else None,
            batch_size=task.batch_size(device, tuple(images.shape[1:]), config.eval_batch_size),
        )
        seconds = {"train": train_record.seconds, "track": train_record.track_seconds}
    t0 = time.perf_counter()
    ctx = PoolContext(
        pool=pool_rows,
        labeled=labeled_rows,
        pool_indices=pool,
        tracker=observer.tracker if observer is not None else None,
        batch_size=task.batch_size(device, tuple(images.shape[1:]), config.eval_batch_size),
        mc_samples=config.mc_samples,
        mc_seed=mc_seed(config, round_),
        embedding_layer=config.embedding_layer,
    )
    query = query_round(model, plan, task, ctx, n, seed=query_seed(config, round_))
    seconds["query"] = time.perf_counter() - t0
    arrays = {k: v for k, v in query.arrays.items() if k not in ("images", "masks")}
    if query.computed.form == "pixel-switches":  # the pixel scores are the switch counts: keep one copy
        arrays.pop("pixel_scores", None)
    dynamics: dict[str, np.ndarray] = {}
    samples: dict[str, np.ndarray] = {}
    if ctx.tracker is not None:
        dynamics = {**task.dynamics(ctx.tracker, query.computed, labels=False), "pool": pool}
        if "switches" not in dynamics:
            dynamics = {}
        samples = sample_table(ctx.tracker, pool, per="sample")
    return Ranking(
        indices=pool[query.positions],
        scores=query.scores,
        n_pool=int(pool.size),
        train=train_record,
        seconds=seconds,
        dynamics=dynamics,
        arrays=arrays,
        samples=samples,
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
        n_pool=int(pool.size),
        seconds={"train": 0.0, "track": 0.0, "query": time.perf_counter() - t0},
    )
