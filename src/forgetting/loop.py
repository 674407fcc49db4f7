"""The active-learning round of the FALSE/GauSS papers, made explicit (design §2).

Each round: re-initialise the model (seeded by seed and round), train it on the labeled set while observing
the unlabeled pool when the strategy needs dynamics, evaluate it on every evaluation set, query the next
samples and reveal their labels. The loop knows nothing of files or databases: it hands each finished
:class:`~forgetting.records.RoundRecord` to ``on_round`` and the caller persists it.

Segmentation: when the training targets are masks (int64 ``[N, H, W]``), each round trains with class
weights from the labeled masks and ``config.segmentation.ignore_index``, tracks the pool per pixel, scores
it per pixel and reduces the scores to one per section (:mod:`forgetting.segmentation.active`), records mIoU
and per-class IoU and accuracy, and stores the queried sections with their score and switch maps.

Resuming: pass the rounds already persisted as ``completed``. The initial set depends only on the seed and
each round's randomness only on (seed, round), so a resumed run makes exactly the queries an uninterrupted
run makes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

from forgetting.data.dataset import Split
from forgetting.devices import data_device, resolve_device
from forgetting.evaluation import evaluate
from forgetting.exceptions import ConfigError, DivergedError, PoolExhaustedError, check_choice
from forgetting.inference import model_device, predict
from forgetting.models import build_model, has_dropout
from forgetting.observe import SUBSAMPLE_MODES, TRACK_PRESETS, ObservationCallback
from forgetting.records import RoundRecord, TrainRecord
from forgetting.strategies import Input, Selection, Strategy, StrategyInputs, get_strategy
from forgetting.training import TrainConfig, fit

if TYPE_CHECKING:  # the segmentation modules load scipy and pydantic: imported when a run needs them
    from forgetting.segmentation.active import SegmentationOptions

logger = logging.getLogger(__name__)

INITIAL_SELECTIONS = ("stratified", "uniform")
ON_EXHAUSTED = ("error", "partial")

# Purposes of derived seeds, so that no two random choices share a stream.
_INITIAL, _MODEL, _TRAIN, _TRACK, _QUERY, _CANDIDATES, _MC = range(7)


def derive_seed(seed: int, round_: int, purpose: int) -> int:
    """A 31-bit seed for one random choice of one round, independent of every other choice."""
    return int(np.random.SeedSequence([seed, round_, purpose]).generate_state(1, dtype=np.uint32)[0] >> 1)


def query_seed(config: LoopConfig, rnd: int) -> int:
    """The seed a strategy's ``select`` gets in round ``rnd`` (classification and segmentation alike)."""
    return derive_seed(config.seed, rnd, _QUERY)


def mc_seed(config: LoopConfig, rnd: int) -> int:
    """The seed of round ``rnd``'s MC-dropout masks (classification and segmentation alike)."""
    return derive_seed(config.seed, rnd, _MC)


@dataclass
class TrackConfig:
    """When and what to observe while a round trains.

    For segmentation the pool is observed per pixel (one :class:`~forgetting.events.EventTracker` of shape
    ``(P, H, W)``).

    The default observes the whole pool after every epoch, as the FALSE/GauSS papers do (preset
    ``"paper-exact"``). ``TrackConfig.preset("unstable-25")`` observes a quarter of the pool after every
    epoch, the rows whose prediction changed at their latest observation first: about a sixth of the
    tracking time, and in ``benchmarks/dynamics_cost.py`` an OOD AUBC 0.1 points below paper-exact on
    average but not shown to be within 0.5 points (README, "Cheap dynamics"), so it is not the default.

    Attributes:
        enabled: ``None`` tracks the pool only when the strategy needs dynamics; ``True`` always (for
            analysis); ``False`` never (a strategy that needs dynamics then fails with a clear error).
        unit, every: observe after every ``every`` epochs or optimizer steps.
        subsample: observe a seeded subset of the pool per pass: a fraction in (0, 1] or a count.
        subsample_mode: ``rotating`` draws a new subset each pass; ``fixed`` keeps one subset per round;
            ``unstable`` spends the same budget on the rows whose prediction changed at their latest
            observation first (see :meth:`forgetting.observe.ObservationCallback.rows_for_pass`).
    """

    enabled: bool | None = None
    unit: Literal["epoch", "step"] = "epoch"
    every: int = 1
    subsample: float | int | None = None
    subsample_mode: Literal["rotating", "fixed", "unstable"] = "rotating"

    def __post_init__(self) -> None:
        check_choice("track.unit", self.unit, ("epoch", "step"))
        check_choice("track.subsample_mode", self.subsample_mode, SUBSAMPLE_MODES)
        if self.every < 1:
            raise ConfigError(f"track.every must be >= 1, got {self.every}")

    @classmethod
    def preset(cls, name: str, *, enabled: bool | None = None) -> TrackConfig:
        """A named schedule of :data:`forgetting.observe.TRACK_PRESETS`: ``"paper-exact"`` (the whole pool
        after every epoch; the default) or ``"unstable-25"`` (a quarter of the pool, unstable rows first)."""
        check_choice("track preset", name, tuple(TRACK_PRESETS))
        return cls(enabled=enabled, **TRACK_PRESETS[name])


@dataclass
class LoopConfig:
    """One active-learning experiment on in-memory data.

    ``rounds`` is the number of queries; ``rounds + 1`` models are trained and evaluated, the last one on
    ``initial_size + rounds * query_size`` labels. ``segmentation`` (reduction, ignore index, class weights)
    applies when the targets are masks; ``None`` means the defaults of :class:`SegmentationOptions`.
    ``class_names`` name the per-class metrics of segmentation rounds (default ``"0"``, ``"1"``, ...).
    """

    model: str = "small-cnn"
    model_options: dict[str, object] = field(default_factory=dict)
    strategy: str = "random"
    strategy_options: dict[str, object] = field(default_factory=dict)
    initial_size: int = 20
    initial_selection: Literal["stratified", "uniform"] = "stratified"
    query_size: int = 20
    rounds: int = 8
    seed: int = 0
    train: TrainConfig = field(default_factory=TrainConfig)
    track: TrackConfig = field(default_factory=TrackConfig)
    mc_samples: int = 20
    pool_subsample: int | None = None
    on_exhausted: Literal["error", "partial"] = "partial"
    device: str | None = None
    eval_batch_size: int | None = None
    segmentation: SegmentationOptions | None = None
    class_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        check_choice("initial_selection", self.initial_selection, INITIAL_SELECTIONS)
        check_choice("on_exhausted", self.on_exhausted, ON_EXHAUSTED)
        for key in ("initial_size", "query_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.rounds < 0:
            raise ConfigError(f"rounds must be >= 0, got {self.rounds}")
        if self.mc_samples < 1:
            raise ConfigError(f"mc_samples must be >= 1, got {self.mc_samples}")
        if self.seed < 0:
            raise ConfigError(f"seed must be a non-negative integer, got {self.seed}")
        if self.pool_subsample is not None and self.pool_subsample < 1:
            raise ConfigError(f"pool_subsample must be a positive count, got {self.pool_subsample}")


def initial_labeled_set(
    labels: torch.Tensor, size: int, *, selection: str = "stratified", seed: int = 0
) -> np.ndarray:
    """The seeded initial labeled set: int64 ``[size]`` sorted indices into ``labels`` (int64 ``[N]``).

    ``stratified`` takes ``size // C`` of each class and fills the remainder from a seeded uniform draw of the
    rest; ``uniform`` draws ``size`` samples uniformly. Different seeds give different sets. Masks (int64
    ``[N, H, W]``) have no per-sample class, so both selections draw segmentation sections uniformly.
    """
    y = labels.cpu().numpy()
    n = y.shape[0]
    if size > n:
        raise PoolExhaustedError(f"initial_size={size} exceeds the {n} training samples")
    rng = np.random.default_rng(seed)
    if selection == "uniform" or y.ndim > 1:
        return np.sort(rng.choice(n, size=size, replace=False)).astype(np.int64)
    check_choice("initial_selection", selection, INITIAL_SELECTIONS)
    classes = np.unique(y)
    per_class = size // len(classes)
    keys = rng.random(n)
    order = np.lexsort((keys, y))  # by class, random within class
    starts = np.searchsorted(y[order], classes)
    counts = np.bincount(np.searchsorted(classes, y), minlength=len(classes))
    take = np.minimum(counts, per_class)
    chosen = np.concatenate([order[s : s + t] for s, t in zip(starts, take, strict=True)])
    if chosen.size < size:
        rest = np.setdiff1d(np.arange(n), chosen)
        chosen = np.concatenate([chosen, rng.choice(rest, size=size - chosen.size, replace=False)])
    return np.sort(chosen).astype(np.int64)


def run_active_learning(
    train: Split,
    eval_sets: Mapping[str, Split],
    num_classes: int,
    config: LoopConfig,
    *,
    completed: Sequence[RoundRecord] = (),
    on_round: Callable[[RoundRecord], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[RoundRecord]:
    """Run (or resume) one active-learning experiment.

    Args:
        train: the training split; its unlabeled part is the pool. ``targets`` play the oracle.
        eval_sets: name -> split; each trained model is evaluated on all of them (``test``, ``digits``,
            ``gaussian_noise-3``...).
        num_classes: C.
        config: the experiment.
        completed: rounds already done (only ``round`` and ``query_indices`` are read). The run continues at
            round ``len(completed)``.
        on_round: called with each finished round, before the next one starts.
        progress: called as ``progress(rounds_done, rounds_total)``.

    Returns:
        The records of the rounds run by this call.
    """
    device = resolve_device(config.device)
    plan = plan_strategy(config, int(train.images.shape[1]), num_classes)
    requires = plan.requires
    segmentation = train.targets.ndim == 3
    if segmentation:
        from forgetting.segmentation.active import (
            SegmentationOptions,
            pixel_batch_size,
            query_sections,
            segmentation_eval_metrics,
            segmentation_form,
        )

        seg_options = config.segmentation or SegmentationOptions()
        segmentation_form(plan.strategy)  # fails early, listing the strategies that work
        if config.eval_batch_size is None:  # sections are large: bound the pixels per inference batch
            h, w = (int(x) for x in train.images.shape[-2:])
            config = replace(config, eval_batch_size=pixel_batch_size(device, h, w))

    n_train = len(train)
    labeled = initial_labeled_set(
        train.targets,
        config.initial_size,
        selection=config.initial_selection,
        seed=derive_seed(config.seed, 0, _INITIAL),
    )
    for record in sorted(completed, key=lambda r: r.round):
        labeled = np.concatenate([labeled, np.asarray(record.query_indices, dtype=np.int64)])
    if np.unique(labeled).size != labeled.size:
        raise ConfigError("completed rounds contain duplicate query indices; the stored run is inconsistent")
    first_round = len(completed)
    total_rounds = config.rounds + 1
    needed = config.initial_size + config.rounds * config.query_size
    if config.on_exhausted == "error" and needed > n_train:
        raise PoolExhaustedError(
            f"initial_size {config.initial_size} + rounds {config.rounds} x query_size {config.query_size} = "
            f"{needed} labels, but the training split has {n_train} samples; lower the rounds to "
            f"{max(0, (n_train - config.initial_size) // config.query_size)}, or set on_exhausted='partial' "
            "to end early when the pool runs out"
        )

    # The pool and the eval sets stay on the device when they fit (data_device); otherwise in host memory,
    # and training, tracking, scoring and evaluation copy each batch to the device.
    tensors = [train.images, train.targets, *(t for s in eval_sets.values() for t in (s.images, s.targets))]
    data_dev = data_device(tensors, device)
    images = train.images.to(data_dev)
    targets = train.targets.to(data_dev)
    eval_on_device = {n: Split(s.images.to(data_dev), s.targets.to(data_dev)) for n, s in eval_sets.items()}
    records: list[RoundRecord] = []
    if progress is not None:
        progress(first_round, total_rounds)

    for rnd in range(first_round, total_rounds):
        labeled_mask = np.zeros(n_train, dtype=bool)
        labeled_mask[labeled] = True
        pool = np.flatnonzero(~labeled_mask).astype(np.int64)
        # With the pool used up, this round trains on everything and only evaluates.
        is_last = rnd == total_rounds - 1 or pool.size == 0
        pool = draw_candidates(pool, config, rnd)
        pool_t = torch.from_numpy(pool).to(data_dev)
        labeled_t = torch.from_numpy(np.sort(labeled)).to(data_dev)

        observe = plan.track and pool.size > 0 and not is_last
        model, train_record, observer = train_round(
            config,
            rnd,
            Split(images[labeled_t], targets[labeled_t]),
            num_classes,
            device=device,
            pool_images=images[pool_t] if observe else None,
            pool_targets=targets[pool_t] if observe and Input.POOL_LABELS in requires else None,
        )

        t0 = time.perf_counter()
        if segmentation:
            metrics = {
                name: segmentation_eval_metrics(
                    model,
                    split,
                    num_classes=num_classes,
                    class_names=config.class_names,
                    ignore_index=seg_options.ignore_index,
                    batch_size=config.eval_batch_size,
                )
                for name, split in eval_on_device.items()
            }
        else:
            metrics = {
                name: evaluate(model, split, batch_size=config.eval_batch_size)
                for name, split in eval_on_device.items()
            }
            bad = [name for name, m in metrics.items() if not np.isfinite(m["nll"])]
            if bad:  # the last optimizer step blew the model up: its outputs are NaN or inf
                what = f"the trained model's outputs on eval set {bad[0]!r} are NaN or inf"
                raise DivergedError(train_record.epochs, lr=config.train.lr, round=rnd, what=what)
        eval_seconds = time.perf_counter() - t0

        t0 = time.perf_counter()
        query_idx = np.zeros(0, dtype=np.int64)
        query_scores = np.zeros(0, dtype=np.float64)
        query_arrays: dict[str, np.ndarray] = {}
        seg_switch_scores: torch.Tensor | None = None
        if not is_last:
            n_query = config.query_size
            if n_query > pool.size:
                if config.on_exhausted == "error":
                    raise PoolExhaustedError(
                        f"round {rnd}: query_size={n_query} but only {pool.size} unlabeled samples remain; "
                        "set on_exhausted='partial' to take what is left"
                    )
                n_query = int(pool.size)
        if not is_last and segmentation:
            query = query_sections(
                model,
                plan.strategy,
                n_query,
                images=images,
                pool=pool,
                pool_t=pool_t,
                labeled_t=labeled_t,
                num_classes=num_classes,
                options=seg_options,
                seed=query_seed(config, rnd),
                masks=targets,
                tracker=observer.tracker if observer is not None else None,
                batch_size=config.eval_batch_size,
                mc_samples=config.mc_samples,
                mc_seed=mc_seed(config, rnd),
            )
            query_idx = pool[query.positions]
            query_scores = query.scores
            query_arrays = query.arrays
            seg_switch_scores = query.switch_scores
        elif not is_last:
            selection = query_round(
                model,
                plan,
                config,
                rnd,
                n_query,
                images=images,
                pool=pool,
                pool_t=pool_t,
                labeled_t=labeled_t,
                targets=targets,
                observer=observer,
            )
            query_idx = pool[np.asarray(selection.indices, dtype=np.int64)]
            query_scores = np.asarray(selection.scores, dtype=np.float64)
        query_seconds = time.perf_counter() - t0

        dynamics: dict[str, np.ndarray] = {}
        if observer is not None and seg_switch_scores is not None:
            # Per section: the reduced pixel switch counts (what GauSS fits) and the observation count.
            tracker = observer.tracker
            dynamics["switches"] = seg_switch_scores.cpu().numpy().astype(np.float32)
            obs = tracker.observations.reshape(tracker.n, -1).amax(1)
            dynamics["observations"] = obs.cpu().numpy().astype(np.int32)
        elif observer is not None:
            tracker = observer.tracker
            dynamics["switches"] = tracker.switches.cpu().numpy().astype(np.int16)
            dynamics["observations"] = tracker.observations.cpu().numpy().astype(np.int32)
            if Input.POOL_LABELS in requires:
                dynamics["forgetting"] = tracker.forgetting.cpu().numpy().astype(np.int16)
                dynamics["never_learned"] = tracker.never_learned.cpu().numpy()

        record = RoundRecord(
            round=rnd,
            n_labeled=int(labeled.size),
            train=train_record,
            seconds={
                "train": train_record.seconds,
                "track": train_record.track_seconds,
                "query": query_seconds,
                "eval": eval_seconds,
            },
            metrics=metrics,
            query_indices=query_idx,
            query_scores=query_scores,
            dynamics=dynamics,
            pool_indices=pool if dynamics else np.zeros(0, dtype=np.int64),
            query_arrays=query_arrays,
        )
        headline = "miou" if segmentation else "accuracy"
        logger.info(
            "round %d/%d: %d labels, %d epochs, test %s %.4f",
            rnd,
            total_rounds - 1,
            labeled.size,
            train_record.epochs,
            headline,
            metrics.get("test", {}).get(headline, float("nan")),
        )
        records.append(record)
        if on_round is not None:
            on_round(record)
        if progress is not None:
            progress(rnd + 1, total_rounds)
        labeled = np.concatenate([labeled, query_idx])
        if is_last:
            if rnd < total_rounds - 1:
                logger.warning(
                    "the pool ran out: round %d trained on every training sample, so the experiment ends "
                    "early, after %d of %d rounds (on_exhausted='partial')",
                    rnd,
                    rnd + 1,
                    total_rounds,
                )
            break
    return records


@dataclass(frozen=True)
class StrategyPlan:
    """A strategy and what a round must compute for it.

    Attributes:
        strategy: the built strategy.
        requires: the inputs it declared.
        track: whether the round observes the unlabeled pool while it trains.
    """

    strategy: Strategy
    requires: frozenset[Input]
    track: bool


def plan_strategy(config: LoopConfig, in_channels: int, num_classes: int) -> StrategyPlan:
    """Build ``config.strategy`` and decide whether rounds track the pool.

    Raises:
        ConfigError: the strategy needs dynamics but tracking is disabled, or needs MC dropout and the model
            has none.
    """
    strategy = get_strategy(config.strategy, **config.strategy_options)
    requires = frozenset(strategy.requires)
    uses_precomputed = bool(getattr(strategy, "uses_precomputed", False))
    needs_dynamics = (Input.DYNAMICS in requires and not uses_precomputed) or Input.POOL_LABELS in requires
    track = config.track.enabled if config.track.enabled is not None else needs_dynamics
    if needs_dynamics and config.track.enabled is False:
        raise ConfigError(f"strategy {config.strategy!r} needs training dynamics but track.enabled is false")
    if Input.MC_PROBS in requires:
        probe = build_model(config.model, in_channels, num_classes, seed=0, **dict(config.model_options))
        if not has_dropout(probe):
            raise ConfigError(
                f"strategy {config.strategy!r} needs MC dropout but model {config.model!r} has no dropout; "
                "set model_options.dropout > 0"
            )
    return StrategyPlan(strategy, requires, bool(track))


def draw_candidates(pool: np.ndarray, config: LoopConfig, rnd: int) -> np.ndarray:
    """The round's query candidates: ``pool`` (int64 ``[P]`` sorted indices), or a seeded sorted subset of
    ``config.pool_subsample`` of them."""
    if pool.size and config.pool_subsample is not None and config.pool_subsample < pool.size:
        rng = np.random.default_rng(derive_seed(config.seed, rnd, _CANDIDATES))
        pool = np.sort(rng.choice(pool, size=config.pool_subsample, replace=False))
    return pool


def train_round(
    config: LoopConfig,
    rnd: int,
    labeled: Split,
    num_classes: int,
    *,
    device: torch.device,
    pool_images: torch.Tensor | None = None,
    pool_targets: torch.Tensor | None = None,
) -> tuple[torch.nn.Module, TrainRecord, ObservationCallback | None]:
    """Build round ``rnd``'s model (seeded by ``config.seed`` and ``rnd``) and fit it on ``labeled``.

    Args:
        config: model, training and tracking settings, and the seed.
        rnd: the round; with the seed it fixes the initialisation, batch order and tracking subsets.
        labeled: uint8 ``[L, C, H, W]`` images and int64 ``[L]`` labels (or ``[L, H, W]`` masks: class
            weights from ``config.segmentation.class_weights``, ``ignore_index`` honoured) to train on.
        num_classes: C.
        device: where the model lives.
        pool_images: uint8 ``[P, C, H, W]`` images to observe while training, or ``None`` to observe nothing.
        pool_targets: int64 ``[P]`` labels of ``pool_images`` (oracle forgetting counts), or ``None``
            (switches only).

    Returns:
        The trained model, the training record, and the observation callback (``None`` without a pool).
    """
    model = build_model(
        config.model,
        int(labeled.images.shape[1]),
        num_classes,
        seed=derive_seed(config.seed, rnd, _MODEL),
        **dict(config.model_options),
    ).to(device)
    observer = None
    if pool_images is not None:
        observer = ObservationCallback(
            pool_images,
            pool_targets,
            every=config.track.every,
            unit=config.track.unit,
            subsample=config.track.subsample,
            subsample_mode=config.track.subsample_mode,
            seed=derive_seed(config.seed, rnd, _TRACK),
            batch_size=config.eval_batch_size,
            name="pool",
        )
    class_weights = None
    ignore_index = None
    if labeled.targets.ndim == 3:  # segmentation: weights from this round's labeled masks
        from forgetting.segmentation.active import SegmentationOptions
        from forgetting.segmentation.training import class_weights_from_masks

        seg = config.segmentation or SegmentationOptions()
        ignore_index = seg.ignore_index
        class_weights = class_weights_from_masks(
            labeled.targets, num_classes, scheme=seg.class_weights, ignore_index=ignore_index
        )
    try:
        record = fit(
            model,
            labeled,
            config.train,
            seed=derive_seed(config.seed, rnd, _TRAIN),
            callbacks=[observer] if observer is not None else [],
            class_weights=class_weights,
            ignore_index=ignore_index,
        )
    except DivergedError as exc:
        raise exc.in_round(rnd) from None
    return model, record, observer


def query_round(
    model: torch.nn.Module | None,
    plan: StrategyPlan,
    config: LoopConfig,
    rnd: int,
    n: int,
    *,
    images: torch.Tensor,
    pool: np.ndarray,
    pool_t: torch.Tensor,
    labeled_t: torch.Tensor,
    targets: torch.Tensor | None = None,
    observer: ObservationCallback | None = None,
) -> Selection:
    """Compute what the strategy declared and let it pick ``n`` pool positions (seeded by seed and round).

    Args:
        model: the round's trained model (``None`` only for a strategy that needs no model output).
        images: uint8 ``[N, C, H, W]`` every image, on the model's device.
        pool: int64 ``[P]`` the candidates' indices into ``images`` (read by precomputed-score strategies).
        pool_t, labeled_t: int64 index tensors of the candidates and of the labeled set, on the device.
        targets: int64 ``[N]`` labels (only read by strategies that need the pool's true labels).
        observer: the callback that tracked the candidates while the model trained.

    Returns:
        The strategy's :class:`Selection` (positions into ``pool``).
    """
    inputs = _strategy_inputs(
        model, plan.strategy, plan.requires, images, targets, pool, pool_t, labeled_t, observer, config, rnd
    )
    return plan.strategy.select(inputs, n, seed=query_seed(config, rnd))


def _strategy_inputs(
    model: torch.nn.Module | None,
    strategy: object,
    requires: frozenset[Input],
    images: torch.Tensor,
    targets: torch.Tensor | None,
    pool: np.ndarray,
    pool_t: torch.Tensor,
    labeled_t: torch.Tensor,
    observer: ObservationCallback | None,
    config: LoopConfig,
    rnd: int,
) -> StrategyInputs:
    """Compute exactly the inputs the strategy declared, on the model's device."""
    inputs = StrategyInputs(n_pool=int(pool.size))
    want_probs = Input.PROBS in requires
    want_embed = Input.EMBEDDINGS in requires
    want_mc = Input.MC_PROBS in requires
    if want_probs or want_embed or want_mc:
        if model is None:
            raise ConfigError(f"strategy {getattr(strategy, 'name', strategy)!r} needs a trained model")
        out = predict(
            model,
            images[pool_t],
            probs=want_probs,
            embeddings=want_embed,
            mc_samples=config.mc_samples if want_mc else 0,
            batch_size=config.eval_batch_size,
            generator_seed=mc_seed(config, rnd),
        )
        inputs.probs_N_C = out.probs_N_C
        inputs.embeddings_N_D = out.embeddings_N_D
        inputs.mc_probs_K_N_C = out.mc_probs_K_N_C
        if want_embed:
            inputs.labeled_embeddings_L_D = predict(
                model, images[labeled_t], probs=False, embeddings=True, batch_size=config.eval_batch_size
            ).embeddings_N_D
    if Input.DYNAMICS in requires:
        if getattr(strategy, "uses_precomputed", False):
            inputs.switches_N = strategy.precomputed_scores(pool)  # type: ignore[attr-defined]
        elif observer is not None:
            inputs.switches_N = observer.tracker.switches
    if Input.POOL_LABELS in requires:
        if targets is None:
            raise ConfigError(
                f"strategy {getattr(strategy, 'name', strategy)!r} needs the true labels of the pool "
                "(oracle analysis); it cannot run on unlabeled data"
            )
        labels = targets[pool_t]
        inputs.pool_labels_N = labels if model is None else labels.to(model_device(model))
        if observer is not None:
            inputs.forgetting_N = observer.tracker.forgetting
            inputs.never_learned_N = observer.tracker.never_learned
    return inputs
