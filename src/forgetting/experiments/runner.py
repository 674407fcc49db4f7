"""Run a grid of experiments into a results store, resumably: in-process, on a local process pool or on Ray.

Every experiment goes through :func:`run_spec` (and so :func:`forgetting.loop.run_active_learning`). Each
finished round is written to the run directory's :class:`~forgetting.experiments.store.ResultStore` before the
next round starts, so a killed run loses at most the rounds in progress. Rerunning the same config on the same
directory skips the finished experiments and continues the others at their next round (the loop rebuilds the
labeled set from the seed and the stored queries).

Backends (``backend=``, see :data:`~forgetting.experiments.config.BACKENDS`):

- ``local``: one experiment after the other in this process;
- ``process``: a pool of ``jobs`` spawned processes; workers send each round back to the driver through a
  queue as soon as it is finished;
- ``ray``: one Ray task per experiment (:mod:`forgetting.experiments.ray_backend`); tasks stream their rounds
  to the driver through a small actor.

In every case only the driver (this process) writes the store; the code that turns the workers' messages into
store writes and progress is shared (:class:`_Driver`).

Testing hooks, to test retries and resumes (do not set them otherwise): when the environment variable
``FORGETTING_TEST_FAIL_ONCE`` names a directory, every experiment raises :class:`InjectedFailure` right after
handing over a round, once per experiment (a marker file ``<dir>/<experiment id>`` remembers that it failed).
``FORGETTING_TEST_CRASH_ONCE`` does the same but kills the process (``os._exit``) instead of raising. With
both set, an experiment first raises, then (in the round after) dies.
"""

from __future__ import annotations

import contextlib
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
from forgetting.experiments.config import (
    BACKENDS,
    ExperimentConfig,
    ExperimentSpec,
    RaySettings,
    expand_grid,
)
from forgetting.experiments.store import DuplicateRoundError, ResultStore
from forgetting.performance import available_cores, flush_denormals, place_model, threads_per_job
from forgetting.records import RoundRecord

__all__ = [
    "Estimate",
    "InjectedFailure",
    "PreparedData",
    "RunSummary",
    "estimate",
    "prepare_data",
    "resolve_backend",
    "run_experiments",
    "run_spec",
]

logger = logging.getLogger(__name__)

RoundCallback = Callable[[RoundRecord], None]
ProgressCallback = Callable[[int, int], None]


# --------------------------------------------------------------------------------------------------------
# Data


@dataclass(frozen=True)
class PreparedData:
    """The tensors one experiment runs on.

    Attributes:
        train: the training split (the pool and the oracle), ``uint8 [N, C, H, W]`` / ``int64 [N]`` (masks
            ``int64 [N, H, W]`` for segmentation).
        eval_sets: eval-set name -> split.
        num_classes: C.
        task: ``"classification"`` or ``"segmentation"``.
        class_names: the dataset's class names.
        ignore_index: the dataset's mask value that counts nothing (segmentation), or ``None``.
    """

    train: Split
    eval_sets: dict[str, Split]
    num_classes: int
    task: str = "classification"
    class_names: tuple[str, ...] = ()
    ignore_index: int | None = None


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
    :func:`forgetting.data.build_eval_set` (a corruption of the test split, a domain-shift dataset, or
    ``split:<name>``, another split of the dataset).
    ``data.train_limit`` / ``data.eval_limit`` cut seeded random subsets (seeded by ``data.seed``).
    """
    from forgetting.data import build_eval_set, load_dataset

    d = spec.data
    key = (spec.dataset, d.root, d.seed, json.dumps(d.options, sort_keys=True))
    dataset = _DATASET_CACHE.get(key)
    if dataset is None:
        dataset = load_dataset(spec.dataset, root=d.root, seed=d.seed, **d.options)
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
                else build_eval_set(
                    name, test, seed=d.seed, root=d.root, classes=dataset.classes, dataset=dataset
                )
            )
            _SPLIT_CACHE[eval_key] = _seeded_subset(split, d.eval_limit, d.seed, f"eval:{name}")
        eval_sets[name] = _SPLIT_CACHE[eval_key]
    ignore = dataset.meta.get("ignore_index") if dataset.task == "segmentation" else None
    return PreparedData(
        train=_SPLIT_CACHE[train_key],
        eval_sets=eval_sets,
        num_classes=dataset.num_classes,
        task=dataset.task,
        class_names=tuple(dataset.classes),
        ignore_index=None if ignore is None else int(ignore),  # type: ignore[call-overload]
    )


def clear_data_cache() -> None:
    """Forget the datasets and eval sets cached by :func:`prepare_data`."""
    _DATASET_CACHE.clear()
    _SPLIT_CACHE.clear()


# --------------------------------------------------------------------------------------------------------
# One experiment

FAIL_ONCE_ENV = "FORGETTING_TEST_FAIL_ONCE"
CRASH_ONCE_ENV = "FORGETTING_TEST_CRASH_ONCE"


class InjectedFailure(ForgettingError):
    """The failure raised by the ``FORGETTING_TEST_FAIL_ONCE`` testing hook (never raised otherwise)."""


def _first_time(marker: Path) -> bool:
    """Create ``marker``; ``True`` if it did not exist (atomic, so it holds across processes)."""
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def _with_fail_once_hook(spec: ExperimentSpec, on_round: RoundCallback | None) -> RoundCallback | None:
    """``on_round`` followed by the testing hooks of the module docstring, when their variables are set."""
    fail_dir = os.environ.get(FAIL_ONCE_ENV)
    crash_dir = os.environ.get(CRASH_ONCE_ENV)
    if not (fail_dir or crash_dir):
        return on_round

    def hooked(record: RoundRecord) -> None:
        if on_round is not None:
            on_round(record)
        if fail_dir and _first_time(Path(fail_dir) / spec.id):
            raise InjectedFailure(
                f"experiment {spec.id}: failure injected after round {record.round} by {FAIL_ONCE_ENV}"
            )
        if crash_dir and _first_time(Path(crash_dir) / spec.id):
            logger.error("experiment %s: %s kills this process", spec.id, CRASH_ONCE_ENV)
            os._exit(70)

    return hooked


def run_spec(
    spec: ExperimentSpec,
    *,
    completed: Sequence[RoundRecord] = (),
    on_round: RoundCallback | None = None,
    progress: ProgressCallback | None = None,
) -> list[RoundRecord]:
    """Run (or resume after ``completed``) one experiment with the active-learning loop; no store involved.

    Every backend runs experiments through this function.
    """
    from forgetting.loop import run_active_learning

    rounds = [r.round for r in completed]
    if rounds != list(range(len(rounds))):
        raise ForgettingError(
            f"experiment {spec.id} ({spec.label}): stored rounds {rounds} are not 0..{len(rounds) - 1}; "
            "the run directory is inconsistent"
        )
    on_round = _with_fail_once_hook(spec, on_round)
    data = prepare_data(spec)
    return run_active_learning(
        data.train,
        data.eval_sets,
        data.num_classes,
        spec.loop_config(),
        task=build_task(spec, data),
        completed=completed,
        on_round=on_round,
        progress=progress,
    )


def build_task(spec: ExperimentSpec, data: PreparedData) -> Any:
    """The :class:`~forgetting.tasks.base.Task` of ``spec`` on ``data``: the dataset's task, with the
    ``[segmentation]`` section's options when the dataset is a segmentation dataset."""
    from forgetting.tasks import get_task

    options: dict[str, Any] = {}
    if data.task == "segmentation":
        options = spec.task_options(dataset_ignore_index=data.ignore_index)
    elif spec.segmentation is not None:
        logger.warning(
            "experiment %s: dataset %r is a %s dataset; the [segmentation] settings do not apply to it",
            spec.label,
            spec.dataset,
            data.task,
        )
    names = data.class_names or None
    return get_task(data.task, data.num_classes, class_names=names, **options)


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


def resolve_backend(backend: str | None, jobs: int | None) -> str:
    """The backend to use: ``backend`` when given, else ``process`` when ``jobs > 1`` and ``local`` if not."""
    if backend is None:
        return "process" if (jobs or 1) > 1 else "local"
    if backend not in BACKENDS:
        raise ConfigError(f"backend: {backend!r} is not a backend; choose one of {list(BACKENDS)}")
    return backend


def run_experiments(
    config: ExperimentConfig | Sequence[ExperimentSpec],
    out_dir: str | Path,
    *,
    jobs: int | None = None,
    backend: str | None = None,
    ray_settings: RaySettings | None = None,
    address: str | None = None,
    progress: bool = True,
    fail_fast: bool = False,
    console: Console | None = None,
    threads: int | None = None,
) -> RunSummary:
    """Run every experiment of ``config`` into ``out_dir/results.sqlite``, resuming what is stored there.

    Args:
        config: a config (expanded with :func:`expand_grid`) or explicit specs.
        out_dir: the run directory; created if missing.
        jobs: parallel experiments of the ``process`` backend (default: the config's ``jobs``; with
            ``backend="process"`` and no jobs anywhere, one per core this process may use). Ignored by
            ``local`` and ``ray``.
        backend: ``local``, ``process`` or ``ray`` (default: the config's ``backend``, else ``process`` when
            ``jobs > 1`` and ``local`` otherwise).
        ray_settings: the ``ray`` backend's settings (default: the config's ``[ray]`` table).
        address: the Ray cluster to join; overrides ``ray_settings.address``. Without any address the ``ray``
            backend starts a local Ray instance (unless this process is already connected to one).
        progress: show rich progress bars (only when the console is a terminal).
        fail_fast: re-raise the first experiment error instead of recording it and going on.
        console: the rich console for the bars (default: stderr).
        threads: torch threads per pool worker (default: the cores this process may use divided by the
            workers started, at least 1, see :func:`forgetting.performance.threads_per_job`); only for
            ``process``.

    Returns:
        A :class:`RunSummary`. Failed experiments are also marked ``failed`` in the store.

    Raises:
        KeyboardInterrupt: after an interrupt (Ctrl-C); the rounds that reached the driver are stored, the
            experiments in progress are marked ``failed`` with the error ``interrupted``, and rerunning the
            same call resumes them.
    """
    if isinstance(config, ExperimentConfig):
        jobs = jobs if jobs is not None else config.jobs
        backend = backend if backend is not None else config.backend
        ray_settings = ray_settings if ray_settings is not None else config.ray
    if jobs is not None and jobs < 1:
        raise ConfigError(f"jobs must be >= 1, got {jobs}")
    backend = resolve_backend(backend, jobs)
    if ray_settings is None:
        ray_settings = RaySettings()
    if address is not None:
        ray_settings = ray_settings.model_copy(update={"address": address})
    if backend == "ray":  # fail before touching the run directory when Ray is missing
        from forgetting.experiments.ray_backend import import_ray

        import_ray()
    if backend == "process" and jobs is None:
        jobs = available_cores()
    if backend != "process" and (jobs or 1) > 1:
        logger.warning("jobs=%d is ignored by the %s backend", jobs, backend)
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
            if not todo:
                pass
            elif backend == "ray":
                from forgetting.experiments.ray_backend import run_ray

                run_ray(todo, _Driver(store, display, summary, todo), ray_settings, fail_fast)
            elif backend == "local" or len(todo) <= 1 or jobs == 1:
                _run_serial(todo, store, display, summary, fail_fast)
            else:
                assert jobs is not None
                per_job = threads if threads is not None else threads_per_job(min(jobs, len(todo)))
                _run_pool(todo, _Driver(store, display, summary, todo), fail_fast, jobs, per_job)
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


class _Driver:
    """The driver side of the parallel backends: turns what workers report into store writes and progress.

    Workers report with messages (tuples): ``("progress", id, rounds_done, rounds_total)`` and
    ``("round", id, RoundRecord)`` while an experiment runs, and the ``process`` backend's workers end each
    experiment with ``("finished", id, seconds)`` or ``("failed", id, error, seconds)``; the ``ray`` backend
    learns the end from the task's result and calls :meth:`finish` / :meth:`fail` itself.
    """

    def __init__(
        self,
        store: ResultStore,
        display: _Display,
        summary: RunSummary,
        todo: Sequence[tuple[ExperimentSpec, Sequence[RoundRecord]]],
    ) -> None:
        self.store = store
        self.display = display
        self.summary = summary
        self.specs = {spec.id: spec for spec, _ in todo}
        self.started: dict[str, float] = {}  # id -> perf_counter() of its first message
        self.terminal: set[str] = set()
        self.received: dict[str, set[int]] = {}  # id -> round numbers received (and stored) in this run
        self.next_round = {spec.id: len(completed) for spec, completed in todo}  # rounds stored: 0..n-1
        self.gaps: set[str] = set()  # ids whose rounds arrived with a gap (a message was lost)

    def begin(self, exp_id: str, done: int) -> None:
        """Note that an experiment runs (on its first message): status ``running``, a progress bar."""
        if exp_id in self.started or exp_id in self.terminal:
            return
        self.started[exp_id] = time.perf_counter()
        self.store.mark_started(exp_id)
        self.display.start(self.specs[exp_id], done)

    def handle(self, msg: tuple[Any, ...]) -> None:
        """Act on one message from a worker."""
        kind, exp_id = msg[0], msg[1]
        if kind == "round":
            record: RoundRecord = msg[2]
            if exp_id in self.terminal:  # the experiment failed here already: its later rounds are moot
                return
            self.begin(exp_id, record.round)
            if record.round > self.next_round[exp_id]:  # stored rounds must stay 0..n-1: drop, retry later
                self.gaps.add(exp_id)
                logger.warning(
                    "experiment %s: round %d arrived before round %d; not stored",
                    exp_id,
                    record.round,
                    self.next_round[exp_id],
                )
                return
            try:
                if self.store.write_round(exp_id, record):
                    self.summary.rounds_written += 1
            except DuplicateRoundError as exc:  # fail this experiment, not the whole run
                self.fail(exp_id, f"{type(exc).__name__}: {exc}")
                return
            self.received.setdefault(exp_id, set()).add(record.round)
            self.next_round[exp_id] = max(self.next_round[exp_id], record.round + 1)
        elif kind == "progress":
            if exp_id in self.terminal:  # a late progress message of a finished experiment
                return
            self.begin(exp_id, msg[2])
            self.display.update(exp_id, msg[2])
        elif kind == "finished":
            self.finish(exp_id, msg[2])
        elif kind == "failed":
            self.fail(exp_id, msg[2], msg[3])
        else:
            raise ValueError(f"unknown worker message {kind!r}")

    def _seconds(self, exp_id: str, seconds: float | None) -> float:
        if seconds is not None:
            return seconds
        t0 = self.started.get(exp_id)
        return 0.0 if t0 is None else time.perf_counter() - t0

    def finish(self, exp_id: str, seconds: float | None = None) -> None:
        """The experiment ended normally (every one of its rounds has been handled)."""
        if exp_id in self.terminal:
            return
        if exp_id in self.gaps:
            self.fail(exp_id, "a round was lost on its way to the driver", seconds)
            return
        self.terminal.add(exp_id)
        self.store.mark_done(exp_id, self._seconds(exp_id, seconds))
        self.summary.finished.append(exp_id)
        self.display.stop(exp_id)

    def fail(self, exp_id: str, error: str, seconds: float | None = None) -> None:
        """The experiment failed; its stored rounds stay and a rerun resumes after them."""
        if exp_id in self.terminal:
            return
        self.terminal.add(exp_id)
        self.store.mark_failed(exp_id, error, self._seconds(exp_id, seconds))
        self.summary.failed[exp_id] = error
        self.display.stop(exp_id)
        logger.error("experiment %s (%s) failed: %s", exp_id, self.specs[exp_id].label, error)

    def interrupt(self, reason: str = "interrupted") -> None:
        """Mark every experiment that started and did not end as failed with ``reason`` (resumable)."""
        for exp_id in [e for e in self.started if e not in self.terminal]:
            self.terminal.add(exp_id)
            self.store.mark_failed(exp_id, reason, self._seconds(exp_id, None))
            self.summary.failed[exp_id] = reason
            self.display.stop(exp_id)
        logger.warning("%s: rerun the same command to resume", reason)


def _run_pool(
    todo: list[tuple[ExperimentSpec, list[RoundRecord]]],
    driver: _Driver,
    fail_fast: bool,
    jobs: int,
    threads: int,
) -> None:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    pending: dict[Future[None], str] = {}
    awaiting: set[str] = set()  # returned or raised, terminal message not yet received

    def drain(timeout: float) -> None:
        try:
            driver.handle(q.get(timeout=timeout))
            while True:
                driver.handle(q.get_nowait())
        except queue_mod.Empty:
            return

    with ProcessPoolExecutor(
        max_workers=min(jobs, len(todo)), mp_context=ctx, initializer=_worker_init, initargs=(q, threads)
    ) as pool:
        for spec, completed in todo:
            pending[pool.submit(_worker_run, spec.to_json(), completed, os.getpid())] = spec.id
        try:
            deadline = math.inf
            while pending or (awaiting - driver.terminal and time.monotonic() < deadline):
                drain(0.2)
                for fut in [f for f in pending if f.done()]:
                    exp_id = pending.pop(fut)
                    exc = fut.exception()
                    if isinstance(exc, BrokenProcessPool):  # the worker died: no terminal message will come
                        driver.fail(exp_id, f"worker process died: {exc}")
                        continue
                    awaiting.add(exp_id)
                    if exc is not None and fail_fast:
                        drain(1.0)
                        for other in pending:
                            other.cancel()
                        raise exc
                if not pending and deadline == math.inf:
                    deadline = time.monotonic() + 60.0  # terminal messages are at most a flush away
            drain(0.0)
        except BaseException as exc:  # Ctrl-C or fail_fast: store what arrived, stop the workers, mark
            workers = list((getattr(pool, "_processes", None) or {}).values())
            pool.shutdown(wait=False, cancel_futures=True)
            with contextlib.suppress(Exception):
                drain(0.0)
            for proc in workers:
                proc.terminate()
            driver.interrupt("interrupted" if not isinstance(exc, Exception) else "stopped by fail_fast")
            raise
    for exp_id in awaiting - driver.terminal:  # defensive: the terminal message never came
        driver.fail(exp_id, "the worker returned without reporting the end of the experiment")


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


@flush_denormals()
def _time_model(spec: ExperimentSpec, data: PreparedData) -> tuple[float, float]:
    """Measured seconds per sample of (eval-mode prediction, training step) of the spec's model, with the
    loop's speed defaults (:mod:`forgetting.performance`)."""
    from forgetting.devices import resolve_device
    from forgetting.inference import eval_mode, to_input
    from forgetting.models import build_from_ref

    device = resolve_device(spec.device)
    model = build_from_ref(
        spec.model, int(data.train.images.shape[1]), data.num_classes, seed=0, options=spec.model_options
    )
    model = place_model(model, device)
    batch = data.train.images[: min(256, len(data.train))]
    x = to_input(batch, device)
    y = data.train.targets[: batch.shape[0]].to(device)
    ignore = data.ignore_index if data.ignore_index is not None else -100
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

    def step_once() -> None:
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x[:bs]), y[:bs], ignore_index=ignore).backward()
        opt.step()

    step_once()  # warm-up: the first backward allocates and picks kernels
    t0 = time.perf_counter()
    for _ in range(3):
        step_once()
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
            spec.track.enabled is None and bool({Input.DYNAMICS, Input.POOL_LABELS} & requires)
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
