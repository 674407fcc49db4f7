"""Run a grid of experiments into a results store, resumably: in-process, on a local process pool or on Ray.

Every experiment goes through :func:`~forgetting.experiments.experiment.run_spec` (and so
:func:`forgetting.loop.run_active_learning`). Each finished round is written to the run directory's
:class:`~forgetting.experiments.store.ResultStore` before the next round starts, so a killed run loses at most
the rounds in progress. Rerunning the same config on the same directory skips the finished experiments and
continues the others at their next round (the loop rebuilds the labeled set from the seed and the stored
queries).

Backends (``backend=``, see :data:`~forgetting.experiments.config.BACKENDS`), one module each:

- ``local``: one experiment after the other in this process (:mod:`~forgetting.experiments.local_backend`);
- ``process``: a pool of ``jobs`` spawned processes; workers send each round back to the driver through a
  queue as soon as it is finished (:mod:`~forgetting.experiments.process_backend`);
- ``ray``: one Ray task per experiment (:mod:`~forgetting.experiments.ray_backend`); tasks stream their rounds
  to the driver through a small actor.

In every case only the driver (this process) writes the store, through one
:class:`~forgetting.experiments.driver.Driver`; each backend depends on that module and on
:mod:`~forgetting.experiments.experiment` (one experiment), and this module on the backends, never the
reverse.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console

from forgetting._io import make_directory
from forgetting._lock import directory_lock
from forgetting.exceptions import ConfigError, ForgettingError
from forgetting.experiments.config import (
    BACKENDS,
    ExperimentConfig,
    ExperimentSpec,
    RaySettings,
    expand_grid,
)
from forgetting.experiments.driver import Display, Driver, RunSummary
from forgetting.experiments.experiment import RoundHook, run_spec
from forgetting.experiments.local_backend import run_local
from forgetting.experiments.preflight import preflight
from forgetting.experiments.prepared import PreparedData, prepare_data
from forgetting.experiments.process_backend import run_pool
from forgetting.experiments.ray_backend import import_ray, run_ray
from forgetting.experiments.store import ResultStore
from forgetting.performance import available_cores, flush_denormals, place_model, threads_per_job
from forgetting.records import RoundRecord

__all__ = [
    "Estimate",
    "RunSummary",
    "estimate",
    "resolve_backend",
    "run_experiments",
    "run_spec",
]

logger = logging.getLogger(__name__)


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
    rerun: Sequence[str] = (),
    check: bool = True,
    round_hook: RoundHook | None = None,
) -> RunSummary:
    """Run every experiment of ``config`` into ``out_dir/results.sqlite``, resuming what is stored there.

    Before anything is written, :func:`~forgetting.experiments.preflight.preflight` checks the devices, the
    data and the sizes, and ``out_dir`` is created and checked. While it runs, the call holds the run
    directory's lock (``out_dir/.lock``): a second run on the same directory fails at once with a
    :class:`~forgetting.exceptions.DirectoryInUseError` naming this process's PID (a lock left by a killed
    run is taken over).

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
        rerun: experiment ids whose stored rounds are deleted first, so that they run again from round 0
            (e.g. after a damaged ``arrays/<id>/round-*.npz``).
        check: run the pre-flight check (``False``: an experiment that cannot run is only found when it runs,
            and is then marked ``failed`` like any other error).
        round_hook: called in the worker after each round has been handed to the driver, with the spec and
            the round (see :data:`~forgetting.experiments.experiment.RoundHook`: it must pickle for the
            ``process`` and ``ray`` backends). The tests inject failures and crashes with it.

    Returns:
        A :class:`RunSummary`. Failed experiments are also marked ``failed`` in the store.

    Raises:
        ConfigError: the pre-flight check failed, ``out_dir`` is not a writable directory, or ``rerun``
            names an experiment that is not in the grid. Nothing was written.
        DirectoryInUseError: another process is running into ``out_dir``.
        StoreCorruptError: ``out_dir/results.sqlite`` is damaged.
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
        import_ray()
    if backend == "process" and jobs is None:
        jobs = available_cores()
    if backend != "process" and (jobs or 1) > 1:
        logger.warning("jobs=%d is ignored by the %s backend", jobs, backend)
    specs = expand_grid(config) if isinstance(config, ExperimentConfig) else list(config)
    out_dir = Path(out_dir)
    t_start = time.perf_counter()
    summary = RunSummary(out_dir=out_dir, experiment_ids=[s.id for s in specs])
    unknown = sorted(set(rerun) - set(summary.experiment_ids))
    if unknown:
        raise ConfigError(
            f"--rerun {', '.join(unknown)}: not an experiment of this config; its experiments are "
            f"{', '.join(summary.experiment_ids)} (see `forgetting run CONFIG --dry-run`)"
        )
    if check:
        summary.warnings = preflight(specs, check_local=not (backend == "ray" and ray_settings.address))
    make_directory(out_dir, what="run directory", hint="pass another --out")
    with directory_lock(out_dir, what="a run"), ResultStore(out_dir) as store:
        if isinstance(config, ExperimentConfig):
            store.set_meta("name", config.name)
            store.set_meta("config_json", config.model_dump_json())
        store.set_meta("grid", json.dumps(summary.experiment_ids))  # the report leaves out stale experiments
        for spec in specs:
            store.add_experiment(spec)
        for exp_id in dict.fromkeys(rerun):
            deleted = store.reset_experiment(exp_id)
            logger.info(
                "experiment %s: %d stored rounds deleted; it runs again from round 0", exp_id, deleted
            )
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
        with Display(progress, console, total) as display:
            driver = Driver(store, display, summary, todo)
            if not todo:
                pass
            elif backend == "ray":
                run_ray(todo, driver, settings=ray_settings, fail_fast=fail_fast, hook=round_hook)
            elif backend == "local" or len(todo) <= 1 or jobs == 1:
                run_local(todo, driver, fail_fast=fail_fast, hook=round_hook)
            else:
                assert jobs is not None
                per_job = threads if threads is not None else threads_per_job(min(jobs, len(todo)))
                run_pool(todo, driver, fail_fast=fail_fast, jobs=jobs, threads=per_job, hook=round_hook)
        rows = {row.id: row for row in store.experiments()}
        for spec in specs:
            row = rows[spec.id]
            if row.status == "done" and row.n_rounds < spec.total_rounds:
                summary.ended_early[spec.id] = (
                    f"the pool ran out: {row.n_rounds} of {spec.total_rounds} rounds, the last one trained "
                    "on every training sample (al.on_exhausted = 'partial')"
                )
    summary.seconds = time.perf_counter() - t_start
    return summary


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
        cap = spec.train.max_epochs if spec.train.max_epochs != "none" else math.inf  # "none": no cap
        epochs = spec.train.epochs or int(min(cap, max(spec.train.min_epochs, 20)))
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
