"""Run a grid of experiments into a results store, resumably, in-process or on a local process pool.

Every experiment goes through :func:`forgetting.loop.run_active_learning`. Each finished round is written to
the run directory's :class:`~forgetting.experiments.store.ResultStore` before the next round starts, so a
killed run loses at most the rounds in progress. Rerunning the same config on the same directory skips the
finished experiments and continues the others at their next round (the loop rebuilds the labeled set from
the seed and the stored queries).

With ``jobs > 1`` the experiments run in a pool of spawned processes; workers send each round back to the
driver through a queue as soon as it is finished, and only the driver writes the store.
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing as mp
import os
import queue as queue_mod
import time
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from forgetting.data.dataset import Split
from forgetting.exceptions import ConfigError, ForgettingError
from forgetting.experiments.config import ExperimentConfig, ExperimentSpec, expand_grid
from forgetting.experiments.store import ResultStore
from forgetting.records import RoundRecord

__all__ = ["Estimate", "PreparedData", "RunSummary", "estimate", "prepare_data", "run_experiments"]

logger = logging.getLogger(__name__)

RoundCallback = Callable[[RoundRecord], None]
ProgressCallback = Callable[[int, int], None]


# --------------------------------------------------------------------------------------------------------
# Data


@dataclass(frozen=True)
class PreparedData:
    """The tensors one experiment runs on.

    Attributes:
        train: the training split (the pool and the oracle), ``uint8 [N, C, H, W]`` / ``int64 [N]``.
        eval_sets: eval-set name -> split.
        num_classes: C.
    """

    train: Split
    eval_sets: dict[str, Split]
    num_classes: int


_DATASET_CACHE: dict[tuple[Any, ...], Any] = {}
_SPLIT_CACHE: dict[tuple[Any, ...], Split] = {}


def _seeded_subset(split: Split, limit: int | None, seed: int, purpose: str) -> Split:
    """A seeded random subset of ``limit`` elements (sorted indices), or ``split`` itself if it is smaller."""
    if limit is None or len(split) <= limit:
        return split
    rng = np.random.default_rng([seed, zlib.crc32(purpose.encode())])
    idx = np.sort(rng.choice(len(split), size=limit, replace=False)).astype(np.int64)
    return split.subset(torch.from_numpy(idx))


def prepare_data(spec: ExperimentSpec) -> PreparedData:
    """Load the dataset and build the eval sets of ``spec``, cached per (dataset, data settings) in-process.

    ``test`` is the dataset's test split; any other eval set comes from
    :func:`forgetting.data.build_eval_set` (a corruption of the test split or a domain-shift dataset).
    ``data.train_limit`` / ``data.eval_limit`` cut seeded random subsets (seeded by ``data.seed``).
    """
    from forgetting.data import build_eval_set, load_dataset

    d = spec.data
    key = (spec.dataset, d.root, d.seed, json.dumps(d.options, sort_keys=True))
    dataset = _DATASET_CACHE.get(key)
    if dataset is None:
        dataset = load_dataset(spec.dataset, root=d.root, seed=d.seed, **d.options)
        if getattr(dataset, "task", "classification") != "classification":
            raise ConfigError(
                f"dataset {spec.dataset!r} is a {dataset.task} dataset; active-learning experiments need a "
                "classification dataset"
            )
        _DATASET_CACHE[key] = dataset
    train_key = (*key, "train", d.train_limit)
    if train_key not in _SPLIT_CACHE:
        _SPLIT_CACHE[train_key] = _seeded_subset(dataset.train, d.train_limit, d.seed, "train")
    test_key = (*key, "test", d.eval_limit)
    if test_key not in _SPLIT_CACHE:
        _SPLIT_CACHE[test_key] = _seeded_subset(dataset.test, d.eval_limit, d.seed, "test")
    test = _SPLIT_CACHE[test_key]
    eval_sets: dict[str, Split] = {}
    for name in spec.eval_sets:
        eval_key = (*key, "eval", d.eval_limit, name)
        if eval_key not in _SPLIT_CACHE:
            split = (
                test
                if name == "test"
                else build_eval_set(name, test, seed=d.seed, root=d.root, classes=dataset.classes)
            )
            _SPLIT_CACHE[eval_key] = _seeded_subset(split, d.eval_limit, d.seed, f"eval:{name}")
        eval_sets[name] = _SPLIT_CACHE[eval_key]
    return PreparedData(train=_SPLIT_CACHE[train_key], eval_sets=eval_sets, num_classes=dataset.num_classes)


def clear_data_cache() -> None:
    """Forget the datasets and eval sets cached by :func:`prepare_data`."""
    _DATASET_CACHE.clear()
    _SPLIT_CACHE.clear()


# --------------------------------------------------------------------------------------------------------
# One experiment


def run_spec(
    spec: ExperimentSpec,
    *,
    completed: Sequence[RoundRecord] = (),
    on_round: RoundCallback | None = None,
    progress: ProgressCallback | None = None,
) -> list[RoundRecord]:
    """Run (or resume after ``completed``) one experiment with the active-learning loop; no store involved."""
    from forgetting.loop import run_active_learning

    rounds = [r.round for r in completed]
    if rounds != list(range(len(rounds))):
        raise ForgettingError(
            f"experiment {spec.id} ({spec.label}): stored rounds {rounds} are not 0..{len(rounds) - 1}; "
            "the run directory is inconsistent"
        )
    data = prepare_data(spec)
    return run_active_learning(
        data.train,
        data.eval_sets,
        data.num_classes,
        spec.loop_config(),
        completed=completed,
        on_round=on_round,
        progress=progress,
    )


# --------------------------------------------------------------------------------------------------------
# Process-pool workers (spawned: everything they touch is importable and picklable)

_WORKER_QUEUE: Any = None


def _worker_init(q: Any, threads: int) -> None:
    global _WORKER_QUEUE
    _WORKER_QUEUE = q
    torch.set_num_threads(threads)


def _worker_run(spec_json: str, completed: list[RoundRecord], parent_pid: int) -> None:
    """Run one experiment in a pool worker. Messages to the driver, in order: ``progress`` and ``round``
    while it runs, then exactly one terminal ``finished`` or ``failed`` (so the driver knows that every
    round of the experiment has arrived)."""
    spec = ExperimentSpec.from_json(spec_json)
    q = _WORKER_QUEUE
    t0 = time.perf_counter()

    def on_round(record: RoundRecord) -> None:
        if os.getppid() != parent_pid:  # the driver died: nobody will store this round, stop working
            os._exit(3)
        q.put(("round", spec.id, record))

    def progress(done: int, total: int) -> None:
        q.put(("progress", spec.id, done, total))

    try:
        run_spec(spec, completed=completed, on_round=on_round, progress=progress)
    except Exception as exc:
        q.put(("failed", spec.id, f"{type(exc).__name__}: {exc}", time.perf_counter() - t0))
        raise
    q.put(("finished", spec.id, time.perf_counter() - t0))


# --------------------------------------------------------------------------------------------------------
# Driver


@dataclass
class RunSummary:
    """What :func:`run_experiments` did.

    Attributes:
        out_dir: the run directory.
        experiment_ids: every experiment of the config, in grid order.
        skipped: ids already finished before this call.
        finished: ids finished by this call.
        failed: id -> error text, for experiments that raised (their stored rounds stay; rerun to resume).
        rounds_written: rounds stored by this call.
        seconds: wall time of this call.
    """

    out_dir: Path
    experiment_ids: list[str]
    skipped: list[str] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    rounds_written: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """No experiment failed."""
        return not self.failed


class _Display:
    """Rich progress bars: one overall (rounds) and one per running experiment; silent when not a TTY."""

    def __init__(self, enabled: bool, console: Console | None, total_rounds: int) -> None:
        console = console or Console(stderr=True)
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            disable=not (enabled and console.is_terminal),
            transient=False,
        )
        self.overall = self.progress.add_task("all experiments (rounds)", total=total_rounds)
        self.tasks: dict[str, Any] = {}
        self._done: dict[str, int] = {}

    def __enter__(self) -> _Display:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def start(self, spec: ExperimentSpec, done: int) -> None:
        self.tasks[spec.id] = self.progress.add_task(spec.label, total=spec.total_rounds, completed=done)
        self._done[spec.id] = done

    def update(self, experiment_id: str, done: int) -> None:
        task = self.tasks.get(experiment_id)
        if task is None:
            return
        delta = done - self._done[experiment_id]
        if delta > 0:
            self._done[experiment_id] = done
            self.progress.update(task, completed=done)
            self.progress.advance(self.overall, delta)

    def stop(self, experiment_id: str) -> None:
        task = self.tasks.pop(experiment_id, None)
        if task is not None:
            self.progress.remove_task(task)


def run_experiments(
    config: ExperimentConfig | Sequence[ExperimentSpec],
    out_dir: str | Path,
    *,
    jobs: int | None = None,
    progress: bool = True,
    fail_fast: bool = False,
    console: Console | None = None,
    threads: int | None = None,
) -> RunSummary:
    """Run every experiment of ``config`` into ``out_dir/results.sqlite``, resuming what is stored there.

    Args:
        config: a config (expanded with :func:`expand_grid`) or explicit specs.
        out_dir: the run directory; created if missing.
        jobs: parallel experiments (default: the config's ``jobs``, else 1). 1 runs in this process; more
            use a spawned process pool whose workers each get ``threads`` torch threads.
        progress: show rich progress bars (only when the console is a terminal).
        fail_fast: re-raise the first experiment error instead of recording it and going on.
        console: the rich console for the bars (default: stderr).
        threads: torch threads per pool worker (default ``cpu_count // jobs``); ignored when ``jobs == 1``.

    Returns:
        A :class:`RunSummary`. Failed experiments are also marked ``failed`` in the store.
    """
    if jobs is None:
        jobs = (config.jobs if isinstance(config, ExperimentConfig) else None) or 1
    if jobs < 1:
        raise ConfigError(f"jobs must be >= 1, got {jobs}")
    specs = expand_grid(config) if isinstance(config, ExperimentConfig) else list(config)
    out_dir = Path(out_dir)
    t_start = time.perf_counter()
    summary = RunSummary(out_dir=out_dir, experiment_ids=[s.id for s in specs])
    with ResultStore(out_dir) as store:
        if isinstance(config, ExperimentConfig):
            store.set_meta("name", config.name)
            store.set_meta("config_json", config.model_dump_json())
        for spec in specs:
            store.add_experiment(spec)
        status = {row.id: row for row in store.experiments()}
        todo: list[tuple[ExperimentSpec, list[RoundRecord]]] = []
        for spec in specs:
            if status[spec.id].status == "done":
                summary.skipped.append(spec.id)
                continue
            completed = store.load_rounds(spec.id, arrays=False)
            todo.append((spec, completed))
        if summary.skipped:
            logger.info("%d of %d experiments already finished; skipped", len(summary.skipped), len(specs))
        resumed = sum(1 for _, c in todo if c)
        if resumed:
            logger.info("%d experiments resume after their stored rounds", resumed)
        total = sum(max(0, s.total_rounds - len(c)) for s, c in todo)
        with _Display(progress, console, total) as display:
            if jobs == 1 or len(todo) <= 1:
                _run_serial(todo, store, display, summary, fail_fast)
            else:
                per_job = threads if threads is not None else max(1, (os.cpu_count() or 1) // jobs)
                _run_pool(todo, store, display, summary, fail_fast, jobs, per_job)
    summary.seconds = time.perf_counter() - t_start
    return summary


def _run_serial(
    todo: list[tuple[ExperimentSpec, list[RoundRecord]]],
    store: ResultStore,
    display: _Display,
    summary: RunSummary,
    fail_fast: bool,
) -> None:
    for spec, completed in todo:
        store.mark_started(spec.id)
        display.start(spec, len(completed))
        t0 = time.perf_counter()

        def on_round(record: RoundRecord, _id: str = spec.id) -> None:
            if store.write_round(_id, record):
                summary.rounds_written += 1

        def on_progress(done: int, total: int, _id: str = spec.id) -> None:
            display.update(_id, done)

        try:
            run_spec(spec, completed=completed, on_round=on_round, progress=on_progress)
        except Exception as exc:
            store.mark_failed(spec.id, f"{type(exc).__name__}: {exc}", time.perf_counter() - t0)
            summary.failed[spec.id] = f"{type(exc).__name__}: {exc}"
            logger.error("experiment %s (%s) failed: %s", spec.id, spec.label, exc)
            if fail_fast:
                raise
        except BaseException:  # KeyboardInterrupt and friends: keep the time spent, then stop
            store.mark_failed(spec.id, "interrupted", time.perf_counter() - t0)
            raise
        else:
            store.mark_done(spec.id, time.perf_counter() - t0)
            summary.finished.append(spec.id)
        finally:
            display.stop(spec.id)


def _run_pool(
    todo: list[tuple[ExperimentSpec, list[RoundRecord]]],
    store: ResultStore,
    display: _Display,
    summary: RunSummary,
    fail_fast: bool,
    jobs: int,
    threads: int,
) -> None:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    specs = {spec.id: spec for spec, _ in todo}
    pending: dict[Future[None], str] = {}
    awaiting: set[str] = set()  # returned or raised, terminal message not yet received
    terminal: set[str] = set()
    started: set[str] = set()

    def fail(exp_id: str, error: str, seconds: float = 0.0) -> None:
        if exp_id in summary.failed:
            return
        store.mark_failed(exp_id, error, seconds)
        summary.failed[exp_id] = error
        display.stop(exp_id)
        logger.error("experiment %s (%s) failed: %s", exp_id, specs[exp_id].label, error)

    def handle(msg: tuple[Any, ...]) -> None:
        kind, exp_id = msg[0], msg[1]
        if kind == "round":
            if store.write_round(exp_id, msg[2]):
                summary.rounds_written += 1
        elif kind == "progress":
            if exp_id not in started:
                started.add(exp_id)
                store.mark_started(exp_id)
                display.start(specs[exp_id], msg[2])
            display.update(exp_id, msg[2])
        elif kind == "finished":
            terminal.add(exp_id)
            store.mark_done(exp_id, msg[2])
            summary.finished.append(exp_id)
            display.stop(exp_id)
        elif kind == "failed":
            terminal.add(exp_id)
            fail(exp_id, msg[2], msg[3])

    def drain(timeout: float) -> None:
        try:
            handle(q.get(timeout=timeout))
            while True:
                handle(q.get_nowait())
        except queue_mod.Empty:
            return

    with ProcessPoolExecutor(
        max_workers=min(jobs, len(todo)), mp_context=ctx, initializer=_worker_init, initargs=(q, threads)
    ) as pool:
        for spec, completed in todo:
            pending[pool.submit(_worker_run, spec.to_json(), completed, os.getpid())] = spec.id
        try:
            deadline = math.inf
            while pending or (awaiting - terminal and time.monotonic() < deadline):
                drain(0.2)
                for fut in [f for f in pending if f.done()]:
                    exp_id = pending.pop(fut)
                    exc = fut.exception()
                    if isinstance(exc, BrokenProcessPool):  # the worker died: no terminal message will come
                        fail(exp_id, f"worker process died: {exc}")
                        continue
                    awaiting.add(exp_id)
                    if exc is not None and fail_fast:
                        drain(1.0)
                        for other in pending:
                            other.cancel()
                        raise exc
                if not pending and deadline == math.inf:
                    deadline = time.monotonic() + 60.0  # terminal messages are at most a flush away
        finally:
            drain(0.0)
    for exp_id in awaiting - terminal:  # defensive: the terminal message never came
        fail(exp_id, "the worker returned without reporting the end of the experiment")


# --------------------------------------------------------------------------------------------------------
# Estimate for --dry-run


@dataclass
class Estimate:
    """The work a config implies, for ``forgetting run --dry-run``.

    Attributes:
        specs: the expanded grid.
        experiments: number of experiments.
        models: models to train, ``sum(rounds + 1)``.
        train_samples: labeled samples passed through training (forward + backward), summed.
        pool_predictions: pool-sample predictions: tracking passes plus strategy scoring (MC passes count K).
        eval_predictions: eval-set sample predictions.
        seconds: a rough wall time for ``jobs=1`` from a measured forward/backward throughput of each model,
            or ``None`` when a dataset could not be loaded.
        notes: assumptions and problems (e.g. a dataset that is not available).
    """

    specs: list[ExperimentSpec]
    experiments: int
    models: int
    train_samples: int
    pool_predictions: int
    eval_predictions: int
    seconds: float | None
    notes: list[str]


def _time_model(spec: ExperimentSpec, data: PreparedData) -> tuple[float, float]:
    """Measured seconds per sample of (eval-mode prediction, training step) of the spec's model."""
    from forgetting.devices import resolve_device
    from forgetting.inference import eval_mode, to_input
    from forgetting.models import build_model

    device = resolve_device(spec.device)
    model = build_model(
        spec.model, data.train.images.shape[1], data.num_classes, seed=0, **spec.model_options
    ).to(device)
    batch = data.train.images[: min(256, len(data.train))]
    x = to_input(batch, device)
    y = data.train.targets[: batch.shape[0]].to(device)
    with eval_mode(model), torch.no_grad():
        model(x)  # warm-up
        t0 = time.perf_counter()
        for _ in range(2):
            model(x)
        if device.type == "cuda":
            torch.cuda.synchronize()
        predict = (time.perf_counter() - t0) / (2 * batch.shape[0])
    bs = min(spec.train.batch_size, batch.shape[0])
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    model.train()
    t0 = time.perf_counter()
    for _ in range(3):
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x[:bs]), y[:bs]).backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    step = (time.perf_counter() - t0) / (3 * bs)
    return predict, step


def estimate(config: ExperimentConfig, *, measure: bool = True) -> Estimate:
    """Count the work of ``config``; with ``measure``, time one batch per model to guess the wall time.

    Assumptions: a round trains ``train.epochs`` epochs, or ``min(max_epochs, max(min_epochs, 20))`` when it
    trains to a target accuracy (the reference run took 11-31 epochs); tracking observes the pool (or its
    subsample) at the configured cadence; strategies that need probabilities/embeddings cost one pool pass
    per round, MC-dropout strategies ``mc_samples`` passes.
    """
    from forgetting.strategies import Input, get_strategy

    specs = expand_grid(config)
    notes: list[str] = []
    models = train_samples = pool_preds = eval_preds = 0
    seconds: float | None = 0.0
    timings: dict[tuple[str, str, str], tuple[float, float]] = {}
    data_cache: dict[str, PreparedData | None] = {}
    for spec in specs:
        models += spec.total_rounds
        if spec.dataset not in data_cache:
            try:
                data_cache[spec.dataset] = prepare_data(spec)
            except ForgettingError as exc:
                data_cache[spec.dataset] = None
                notes.append(f"dataset {spec.dataset!r} could not be loaded, its work is not counted: {exc}")
        data = data_cache[spec.dataset]
        if data is None:
            seconds = None
            continue
        n_train = len(data.train)
        n_eval = sum(len(s) for s in data.eval_sets.values())
        strategy = get_strategy(spec.strategy, **spec.strategy_options)
        requires = frozenset(strategy.requires)
        tracked = spec.track.enabled is True or (
            spec.track.enabled is None
            and (
                (Input.DYNAMICS in requires and not getattr(strategy, "uses_precomputed", False))
                or Input.POOL_LABELS in requires
            )
        )
        passes = (1 if ({Input.PROBS, Input.EMBEDDINGS} & requires) else 0) + (
            spec.al.mc_samples if Input.MC_PROBS in requires else 0
        )
        epochs = spec.train.epochs or min(spec.train.max_epochs, max(spec.train.min_epochs, 20))
        exp_train = exp_pool = 0
        steps = 0
        for r in range(spec.total_rounds):
            labeled = min(n_train, spec.al.initial_size + r * spec.al.query_size)
            pool = n_train - labeled
            if spec.al.pool_subsample is not None:
                pool = min(pool, spec.al.pool_subsample)
            batches = math.ceil(labeled / spec.train.batch_size)
            exp_train += epochs * labeled
            steps += epochs * batches
            last = r == spec.total_rounds - 1
            if tracked and not last:
                cadence = epochs if spec.track.unit == "epoch" else epochs * batches
                observations = cadence // spec.track.every
                sub = spec.track.subsample
                per_pass = (
                    pool
                    if sub == "all"
                    else (min(pool, int(sub)) if isinstance(sub, int) else math.ceil(pool * sub))
                )
                exp_pool += observations * per_pass
            if not last:
                exp_pool += passes * pool
        train_samples += exp_train
        pool_preds += exp_pool
        eval_preds += n_eval * spec.total_rounds
        if measure and seconds is not None:
            key = (spec.dataset, spec.model, json.dumps(spec.model_options, sort_keys=True))
            if key not in timings:
                timings[key] = _time_model(spec, data)
            t_pred, t_step = timings[key]
            seconds += exp_train * t_step + (exp_pool + n_eval * spec.total_rounds) * t_pred
            seconds += steps * 2e-4  # per-step Python overhead
    if not measure:
        seconds = None
    notes.append(
        "epochs per round assumed: train.epochs, else min(max_epochs, max(min_epochs, 20)); the time is a "
        "rough single-process guess from one measured batch per model"
    )
    return Estimate(
        specs=specs,
        experiments=len(specs),
        models=models,
        train_samples=train_samples,
        pool_predictions=pool_preds,
        eval_predictions=eval_preds,
        seconds=seconds,
        notes=notes,
    )
