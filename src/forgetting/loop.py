"""The active-learning round of the FALSE/GauSS papers, made explicit (design §2), for any task, model,
training loop and data.

Each round: re-initialise the model (seeded by seed and round), train it on the labeled set while observing
the unlabeled pool when the strategy needs dynamics, evaluate it on every evaluation set, query the next
samples and reveal their labels. The loop knows nothing of files or databases: it hands each finished
:class:`~forgetting.records.RoundRecord` to ``on_round`` and the caller persists it.

What the loop runs is open at four seams (design §9):

* **task**: what a kind of data needs (:class:`~forgetting.tasks.base.Task`: training losses, element-wise
  scoring and reduction, metrics, stored arrays). Classification and segmentation are built in; the loop
  never branches on the kind of data.
* **model**: a zoo or registered name, an import path ``"pkg.mod:fn"`` or a factory callable
  (:mod:`forgetting.models.factory`), rebuilt and seeded every round.
* **training**: ``LoopConfig.train_fn``, a function ``(model, labeled, observer) -> TrainRecord | None``
  (:data:`~forgetting.training.TrainFn`); the default runs :func:`~forgetting.training.fit`.
* **data**: in-memory :class:`~forgetting.data.dataset.Split` tensors (the fast path), or any
  :class:`~forgetting.data.source.DataSource`, e.g. a user's ``torch`` Dataset read lazily.

Resuming: pass the rounds already persisted as ``completed``. The initial set depends only on the seed and
each round's randomness only on (seed, round), so a resumed run makes exactly the queries an uninterrupted
run makes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import nn

from forgetting.data.source import DataSource
from forgetting.devices import data_device, resolve_device
from forgetting.exceptions import ConfigError, DivergedError, PoolExhaustedError, check_choice
from forgetting.exports import sample_table
from forgetting.initial import INITIAL_SELECTIONS, initial_labeled_set, uniform_initial_set
from forgetting.models.factory import ModelRef, build_from_ref, check_model_for, import_object, model_label
from forgetting.observe import ObservationCallback, Observer
from forgetting.performance import place_model
from forgetting.records import RoundRecord, TrainRecord
from forgetting.settings import TrackConfig
from forgetting.strategies import Input, Selection, Strategy, get_strategy
from forgetting.tasks import PoolContext, PoolInputs, Task, get_task, task_name_for_targets
from forgetting.training import TrainConfig, TrainFn, fit_fn, run_train_fn

__all__ = [
    "INITIAL_SELECTIONS",
    "ON_EXHAUSTED",
    "LoopConfig",
    "Query",
    "StrategyPlan",
    "TrackConfig",
    "derive_seed",
    "draw_candidates",
    "initial_labeled_set",
    "mc_seed",
    "plan_strategy",
    "query_round",
    "query_seed",
    "resolve_task",
    "run_active_learning",
    "train_round",
    "uniform_initial_set",
]

logger = logging.getLogger(__name__)

ON_EXHAUSTED = ("error", "partial")

# Purposes of derived seeds, so that no two random choices share a stream.
_INITIAL, _MODEL, _TRAIN, _TRACK, _QUERY, _CANDIDATES, _MC = range(7)


def derive_seed(seed: int, round_: int, purpose: int) -> int:
    """A 31-bit seed for one random choice of one round, independent of every other choice."""
    return int(np.random.SeedSequence([seed, round_, purpose]).generate_state(1, dtype=np.uint32)[0] >> 1)


def query_seed(config: LoopConfig, rnd: int) -> int:
    """The seed a strategy's ``select`` gets in round ``rnd`` (every task alike)."""
    return derive_seed(config.seed, rnd, _QUERY)


def mc_seed(config: LoopConfig, rnd: int) -> int:
    """The seed of round ``rnd``'s MC-dropout masks (every task alike)."""
    return derive_seed(config.seed, rnd, _MC)


@dataclass
class LoopConfig:
    """One active-learning experiment.

    ``rounds`` is the number of queries; ``rounds + 1`` models are trained and evaluated, the last one on
    ``initial_size + rounds * query_size`` labels.

    Attributes:
        model: a zoo or registered name (``"small-cnn"``), an import path (``"mypkg.nets:deeplab"``) or a
            factory callable returning an ``nn.Module`` (see :mod:`forgetting.models.factory`); rebuilt each
            round inside a forked RNG seeded by (seed, round).
        model_options: keyword arguments of the model (zoo options, or the factory's own keywords).
        embedding_layer: the submodule whose output is the embedding of ``coreset``/``badge`` (read through a
            forward hook); ``None``: the zoo's ``embed`` or the model's ``features(x)`` method.
        train: the built-in trainer's settings (used when ``train_fn`` is ``None``).
        train_fn: the round's training function ``(model, labeled, observer) -> TrainRecord | None``, or its
            import path ``"pkg.mod:fn"``; ``None`` runs :func:`~forgetting.training.fit` with ``train``.
        initial_seed: ``None`` (default: derived from ``seed``), or the seed of the initial labeled set
            alone, so that every ``seed`` shares one initial set, as in the authors' code.
    """

    model: ModelRef = "small-cnn"
    model_options: dict[str, object] = field(default_factory=dict)
    embedding_layer: str | None = None
    strategy: str = "random"
    strategy_options: dict[str, object] = field(default_factory=dict)
    initial_size: int = 20
    initial_selection: Literal["stratified", "uniform"] = "stratified"
    initial_seed: int | None = None
    query_size: int = 20
    rounds: int = 8
    seed: int = 0
    train: TrainConfig = field(default_factory=TrainConfig)
    train_fn: TrainFn | str | None = None
    track: TrackConfig = field(default_factory=TrackConfig)
    mc_samples: int = 20
    pool_subsample: int | None = None
    on_exhausted: Literal["error", "partial"] = "partial"
    device: str | None = None
    eval_batch_size: int | None = None

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
        if self.initial_seed is not None and self.initial_seed < 0:
            raise ConfigError(f"initial_seed must be a non-negative integer or None, got {self.initial_seed}")
        if not (isinstance(self.model, str) or callable(self.model)):
            raise ConfigError(
                "model must be a name, an import path 'pkg.mod:fn' or a callable; got "
                f"{type(self.model).__name__}"
            )

    def resolved_train_fn(self) -> TrainFn:
        """The training function rounds use: ``train_fn`` (imported when a path), else ``fit`` with
        ``train``."""
        if self.train_fn is None:
            return fit_fn(self.train)
        fn = (
            import_object(self.train_fn, what="train_fn") if isinstance(self.train_fn, str) else self.train_fn
        )
        if not callable(fn):
            raise ConfigError(f"train_fn {self.train_fn!r} is not callable")
        return fn


def resolve_task(task: Task | str | None, train: DataSource, num_classes: int) -> Task:
    """The round's :class:`Task`: ``task`` itself, a registered name, or (``None``) the built-in task of the
    training targets' shape (a class id per sample: classification; a mask: segmentation)."""
    if isinstance(task, Task):
        if task.num_classes != num_classes:
            raise ConfigError(f"the task has {task.num_classes} classes but num_classes={num_classes}")
        return task
    if task is None:
        if not len(train):
            raise ConfigError("the training data is empty")
        task = task_name_for_targets(int(train.read_targets([0]).ndim) - 1)
    return get_task(task, num_classes)


@dataclass(frozen=True)
class StrategyPlan:
    """A strategy and what a round must compute for it.

    Attributes:
        strategy: the built strategy.
        requires: the inputs it declared.
        track: whether the round observes the unlabeled pool while it trains.
        form: how the task applies it (see :meth:`forgetting.tasks.base.Task.support`).
    """

    strategy: Strategy
    requires: frozenset[Input]
    track: bool
    form: str = "samples"

    @property
    def needs_model(self) -> bool:
        """Whether the strategy reads the round's trained model (outputs or dynamics)."""
        return Task.needs_model(self.strategy)


def plan_strategy(config: LoopConfig, task: Task) -> StrategyPlan:
    """Build ``config.strategy``, check that ``task`` can run it, and decide whether rounds track the pool.

    Raises:
        ConfigError: the task has no form of the strategy (the message lists those that work), or the
            strategy needs dynamics but tracking is disabled.
    """
    strategy = get_strategy(config.strategy, **config.strategy_options)
    form = task.check_strategy(strategy)
    requires = frozenset(strategy.requires)
    needs_dynamics = Input.DYNAMICS in requires or Input.POOL_LABELS in requires
    track = config.track.enabled if config.track.enabled is not None else needs_dynamics
    if needs_dynamics and config.track.enabled is False:
        raise ConfigError(f"strategy {config.strategy!r} needs training dynamics but track.enabled is false")
    return StrategyPlan(strategy, requires, bool(track), form)


def draw_candidates(pool: np.ndarray, config: LoopConfig, rnd: int) -> np.ndarray:
    """The round's query candidates: ``pool`` (int64 ``[P]`` sorted indices), or a seeded sorted subset of
    ``config.pool_subsample`` of them."""
    if pool.size and config.pool_subsample is not None and config.pool_subsample < pool.size:
        rng = np.random.default_rng(derive_seed(config.seed, rnd, _CANDIDATES))
        pool = np.sort(rng.choice(pool, size=config.pool_subsample, replace=False))
    return pool


def build_round_model(config: LoopConfig, rnd: int, in_channels: int, num_classes: int) -> nn.Module:
    """Round ``rnd``'s freshly initialised model (seeded by ``config.seed`` and ``rnd``), on the CPU."""
    return build_from_ref(
        config.model,
        in_channels,
        num_classes,
        seed=derive_seed(config.seed, rnd, _MODEL),
        options=config.model_options,
    )


def train_round(
    config: LoopConfig,
    rnd: int,
    task: Task,
    labeled: DataSource,
    *,
    device: torch.device,
    plan: StrategyPlan | None = None,
    pool: DataSource | None = None,
    pool_targets: torch.Tensor | None = None,
    batch_size: int | None = None,
) -> tuple[nn.Module, TrainRecord, Observer]:
    """Build round ``rnd``'s model (seeded by ``config.seed`` and ``rnd``) and train it on ``labeled``.

    Args:
        config: model, training function, tracking settings and the seed.
        rnd: the round; with the seed it fixes the initialisation, batch order and tracking subsets.
        task: the kind of data (loss settings of the labelled set, the pool tracker's ignore index).
        labeled: the labelled rows to train on.
        device: where the model lives.
        plan: the strategy's plan; the model is checked against what it needs (MC dropout, embeddings)
            before training.
        pool: the rows to observe while training, or ``None`` to observe nothing.
        pool_targets: the true targets of ``pool`` (oracle forgetting counts), or ``None`` (switches only).
        batch_size: inference batch size of the observation passes.

    Returns:
        The trained model, the training record, and the :class:`~forgetting.observe.Observer` (whose
        ``tracker`` is the pool's, or ``None`` without a pool).
    """
    model = build_round_model(config, rnd, int(labeled.input_shape[0]), task.num_classes)
    if plan is not None:
        check_model_for(
            model,
            plan.strategy.name,
            needs_mc=Input.MC_PROBS in plan.requires,
            needs_embeddings=Input.EMBEDDINGS in plan.requires,
            layer=config.embedding_layer,
        )
    model = place_model(model, device)  # channels_last for the zoo's CNNs on a CPU
    callbacks = []
    if pool is not None:
        callbacks.append(
            ObservationCallback(
                pool,
                pool_targets,
                every=config.track.every,
                unit=config.track.unit,
                subsample=config.track.subsample,
                subsample_mode=config.track.subsample_mode,
                first_observation=config.track.first_observation,
                seed=derive_seed(config.seed, rnd, _TRACK),
                batch_size=batch_size,
                ignore_index=task.observe_ignore_index,
                name="pool",
            )
        )
    observer = Observer(callbacks)
    training = task.labeled_set(labeled, seed=derive_seed(config.seed, rnd, _TRAIN), device=device)
    try:
        record = run_train_fn(config.resolved_train_fn(), model, training, observer)
    except DivergedError as exc:
        raise exc.in_round(rnd) from None
    return model, record, observer


@dataclass
class Query:
    """What one query picked.

    Attributes:
        selection: the strategy's :class:`~forgetting.strategies.Selection` (positions into the pool).
        arrays: the task's :meth:`~forgetting.tasks.base.Task.query_arrays` of the picks.
        computed: the strategy inputs the task computed (with its per-pool extras).
    """

    selection: Selection
    arrays: dict[str, np.ndarray]
    computed: PoolInputs

    @property
    def positions(self) -> np.ndarray:
        """int64 ``[n]`` positions into the pool, in selection order."""
        return np.asarray(self.selection.indices, dtype=np.int64)

    @property
    def scores(self) -> np.ndarray:
        """float64 ``[n]`` the strategy's score of each pick (NaN where it has none)."""
        return np.asarray(self.selection.scores, dtype=np.float64)


def query_round(
    model: nn.Module | None, plan: StrategyPlan, task: Task, ctx: PoolContext, n: int, *, seed: int
) -> Query:
    """Compute what the strategy declared (through the task), let it pick ``n`` pool positions (seeded),
    and collect the arrays the task stores about the picks. The simulation loop and the labelling projects
    both query through here."""
    computed = task.pool_inputs(model, plan.strategy, ctx)
    selection = plan.strategy.select(computed.inputs, n, seed=seed)
    positions = np.asarray(selection.indices, dtype=np.int64)
    arrays = task.query_arrays(model, plan.strategy, ctx, positions, computed)
    return Query(selection, arrays, computed)


def _device_tensors(sources: Sequence[DataSource]) -> list[torch.Tensor]:
    """The in-memory tensors of ``sources`` (what :func:`~forgetting.devices.data_device` weighs)."""
    out: list[torch.Tensor] = []
    for source in sources:
        tensors = source.as_tensors()
        if tensors is not None:
            out.extend(t for t in tensors if t is not None)
    return out


def run_active_learning(
    train: DataSource,
    eval_sets: Mapping[str, DataSource],
    num_classes: int,
    config: LoopConfig,
    *,
    task: Task | str | None = None,
    completed: Sequence[RoundRecord] = (),
    on_round: Callable[[RoundRecord], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[RoundRecord]:
    """Run (or resume) one active-learning experiment.

    Args:
        train: the training rows (a :class:`~forgetting.data.dataset.Split`, or any
            :class:`~forgetting.data.source.DataSource`); its unlabeled part is the pool, and its targets play
            the oracle.
        eval_sets: name -> rows; each trained model is evaluated on all of them (``test``, ``digits``,
            ``gaussian_noise-3``...).
        num_classes: K.
        config: the experiment.
        task: a :class:`~forgetting.tasks.base.Task`, a registered task name, or ``None``: the built-in task
            of the targets' shape (class ids: classification; masks: segmentation with default options).
        completed: rounds already done (only ``round`` and ``query_indices`` are read). The run continues at
            round ``len(completed)``.
        on_round: called with each finished round, before the next one starts.
        progress: called as ``progress(rounds_done, rounds_total)``.

    Returns:
        The records of the rounds run by this call.
    """
    device = resolve_device(config.device)
    task = resolve_task(task, train, num_classes)
    plan = plan_strategy(config, task)
    batch_size = task.batch_size(device, train.input_shape, config.eval_batch_size)

    n_train = len(train)
    labeled = task.initial_set(
        train,
        config.initial_size,
        selection=config.initial_selection,
        seed=derive_seed(config.seed if config.initial_seed is None else config.initial_seed, 0, _INITIAL),
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

    # In-memory data stays on the device when it fits (data_device); otherwise in host memory, and training,
    # tracking, scoring and evaluation copy each batch to the device. Lazy sources read batch by batch.
    data_dev = data_device(_device_tensors([train, *eval_sets.values()]), device)
    train = train.to(data_dev)
    evals = {name: source.to(data_dev) for name, source in eval_sets.items()}
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
        pool_rows = train.subset(pool)
        labeled_rows = train.subset(np.sort(labeled))
        pool_targets = None
        if Input.POOL_LABELS in plan.requires and pool.size:
            pool_targets = pool_rows.read_targets().to(data_dev)

        observe = plan.track and pool.size > 0 and not is_last
        model, train_record, observer = train_round(
            config,
            rnd,
            task,
            labeled_rows,
            device=device,
            plan=plan,
            pool=pool_rows if observe else None,
            pool_targets=pool_targets if observe else None,
            batch_size=batch_size,
        )

        t0 = time.perf_counter()
        metrics = {
            name: task.evaluate(model, source, batch_size=batch_size) for name, source in evals.items()
        }
        if task.divergence_metric is not None:
            bad = [name for name, m in metrics.items() if not np.isfinite(m[task.divergence_metric])]
            if bad:  # the last optimizer step blew the model up: its outputs are NaN or inf
                what = f"the trained model's outputs on eval set {bad[0]!r} are NaN or inf"
                raise DivergedError(train_record.epochs, lr=config.train.lr, round=rnd, what=what)
        eval_seconds = time.perf_counter() - t0

        t0 = time.perf_counter()
        query_idx = np.zeros(0, dtype=np.int64)
        query_scores = np.zeros(0, dtype=np.float64)
        query_arrays: dict[str, np.ndarray] = {}
        strategy_arrays: dict[str, np.ndarray] = {}
        computed: PoolInputs | None = None
        if not is_last:
            n_query = config.query_size
            if n_query > pool.size:
                if config.on_exhausted == "error":
                    raise PoolExhaustedError(
                        f"round {rnd}: query_size={n_query} but only {pool.size} unlabeled samples remain; "
                        "set on_exhausted='partial' to take what is left"
                    )
                n_query = int(pool.size)
            ctx = PoolContext(
                pool=pool_rows,
                labeled=labeled_rows,
                pool_indices=pool,
                tracker=observer.tracker,
                pool_targets=pool_targets,
                batch_size=batch_size,
                mc_samples=config.mc_samples,
                mc_seed=mc_seed(config, rnd),
                embedding_layer=config.embedding_layer,
            )
            query = query_round(model, plan, task, ctx, n_query, seed=query_seed(config, rnd))
            computed = query.computed
            query_idx = pool[query.positions]
            query_scores = query.scores
            query_arrays = query.arrays
            strategy_arrays = plan.strategy.fitted()
        query_seconds = time.perf_counter() - t0

        dynamics: dict[str, np.ndarray] = {}
        samples: dict[str, np.ndarray] = {}
        if observer.tracker is not None:
            dynamics = task.dynamics(observer.tracker, computed, labels=Input.POOL_LABELS in plan.requires)
            samples = sample_table(observer.tracker, pool, per="sample")

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
            samples=samples,
            strategy_arrays=strategy_arrays,
        )
        headline = task.headline_metric
        logger.info(
            "round %d/%d: %d labels, %d epochs, test %s %.4f (model %s)",
            rnd,
            total_rounds - 1,
            labeled.size,
            train_record.epochs,
            headline,
            metrics.get("test", {}).get(headline, float("nan")),
            model_label(config.model),
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
