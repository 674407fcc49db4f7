"""The ``ray`` backend: one Ray task per experiment; the driver alone writes the results store.

How it works:

- The driver joins the cluster at ``address`` or, without one, starts a local Ray instance (and stops it at
  the end). A process that is already connected to Ray (``ray.init`` called before) keeps its connection.
- A small actor, the *channel*, carries messages from the tasks to the driver. Each task runs
  :func:`~forgetting.experiments.experiment.run_spec` and posts every finished round to the channel before it
  starts the next one; the driver polls the channel and writes the rounds to the store as they arrive, so
  progress advances round by round and a killed task loses at most the round it was computing. Tasks never
  wait on the channel (a task blocked in ``ray.get`` would hand its CPU to another task and oversubscribe
  the node); instead each task returns the round numbers it posted, and the driver ends an experiment only
  once all of them have arrived.
- A task returns its experiment's exception instead of raising it. The driver retries a failed experiment
  (an exception, or a worker or node that died) up to ``max_retries`` times with a new task that resumes
  after the rounds already stored, so nothing is computed or stored twice. When the retries are spent the
  experiment is marked ``failed``; a rerun resumes it.
- Ctrl-C (or ``fail_fast``) cancels the tasks, stores the rounds that already arrived, marks the experiments
  in progress ``failed`` (``interrupted``) and leaves a directory that a rerun resumes.

Ray is an optional dependency: ``pip install 'forgetting[ray]'``.
"""

from __future__ import annotations

import contextlib
import logging
import pickle
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from forgetting.exceptions import ForgettingError, MissingDependencyError
from forgetting.experiments.config import ExperimentSpec, RaySettings
from forgetting.experiments.driver import Driver, Work
from forgetting.experiments.experiment import RoundHook, run_spec
from forgetting.records import RoundRecord

__all__ = ["import_ray", "run_ray"]

logger = logging.getLogger(__name__)

#: Seconds between two polls of the channel by the driver.
POLL_SECONDS = 0.2
#: Seconds the driver waits for the rounds a finished task posted (they travel apart from its result).
ROUNDS_TIMEOUT = 60.0
#: Seconds the driver waits after a worker died, for rounds that it posted just before, before a retry.
SETTLE_SECONDS = 2.0


def import_ray() -> ModuleType:
    """The ``ray`` module, or a :class:`MissingDependencyError` that says how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise MissingDependencyError(
            "the ray backend needs Ray, which is not installed here; install it with "
            "`pip install 'forgetting[ray]'` (or run with --backend local or --backend process)"
        ) from exc
    return ray


def _channel_class() -> type:
    """The channel actor's class. Defined in a function so that Ray ships it by value, and the messages are
    pickled bytes: the actor's worker never imports forgetting (and torch), which takes seconds."""

    class Channel:
        """A queue of pickled messages between tasks and driver."""

        def __init__(self) -> None:
            self._messages: list[bytes] = []

        def post(self, message: bytes) -> None:
            self._messages.append(message)

        def take(self) -> list[bytes]:
            messages, self._messages = self._messages, []
            return messages

    return Channel


def _post(channel: Any, message: tuple[Any, ...]) -> None:
    """Send ``message`` to the channel without waiting (calls from one task reach the actor in order)."""
    channel.post.remote(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))


def _take(ray: ModuleType, channel: Any, timeout: float | None = None) -> list[tuple[Any, ...]]:
    """The messages posted since the previous call, in order."""
    return [pickle.loads(blob) for blob in ray.get(channel.take.remote(), timeout=timeout)]


@dataclass(frozen=True)
class _Failure:
    """How an experiment failed inside its task: the error text, and the exception when it pickles."""

    error: str
    exception: Exception | None


def _run_task(
    spec_json: str, completed: list[RoundRecord], channel: Any, threads: int, hook: RoundHook | None
) -> tuple[list[int], _Failure | None]:
    """The body of one Ray task: run (or resume after ``completed``) one experiment, posting each round and
    progress to ``channel`` without waiting.

    Returns:
        The round numbers posted, and what ended the experiment (``None`` when it finished).
    """
    import torch

    spec = ExperimentSpec.from_json(spec_json)
    torch.set_num_threads(threads)
    posted: list[int] = []

    def on_round(record: RoundRecord) -> None:
        _post(channel, ("round", spec.id, record))
        posted.append(record.round)

    def progress(done: int, total: int) -> None:
        _post(channel, ("progress", spec.id, done, total))

    try:
        run_spec(spec, completed=completed, on_round=on_round, progress=progress, hook=hook)
    except Exception as exc:
        logger.exception("experiment %s (%s) failed", spec.id, spec.label)
        try:
            pickle.dumps(exc)
        except Exception:  # the driver gets the text only
            return posted, _Failure(f"{type(exc).__name__}: {exc}", None)
        return posted, _Failure(f"{type(exc).__name__}: {exc}", exc)
    return posted, None


def _describe(ray: ModuleType, failure: _Failure | BaseException) -> tuple[str, BaseException | None]:
    """The error text of a failed task for the store, and the exception to re-raise under ``fail_fast``."""
    if isinstance(failure, _Failure):  # returned by the task: the experiment's own error
        return failure.error, failure.exception
    cause = getattr(failure, "cause", None) if isinstance(failure, ray.exceptions.RayTaskError) else None
    if isinstance(cause, Exception):
        return f"{type(cause).__name__}: {cause}", cause
    text = str(failure).strip().splitlines()[0] if str(failure).strip() else ""
    return f"{type(failure).__name__}: {text}", failure


def _connect(ray: ModuleType, settings: RaySettings) -> bool:
    """Connect to Ray as ``settings`` ask; ``True`` when this call started (and so must stop) Ray."""
    if ray.is_initialized():
        if settings.address:
            logger.info("already connected to Ray; the address %r is not used", settings.address)
        return False
    if settings.address:
        logger.info("joining the Ray cluster at %s", settings.address)
        ray.init(address=settings.address, include_dashboard=False)
    else:
        logger.info("starting a local Ray instance")
        ray.init(num_cpus=settings.local_num_cpus, include_dashboard=False)
    return True


@dataclass
class _Ending:
    """A task that returned (or died) whose experiment waits for its posted rounds before it ends."""

    posted: set[int]
    error: _Failure | BaseException | None
    not_before: float  # monotonic time; a dead worker's last rounds may still be on their way
    deadline: float


@dataclass
class _Tasks:
    """The driver's view of the tasks: submission, retries and the experiments that are ending."""

    ray: ModuleType
    remote: Any
    channel: Any
    threads: int
    max_retries: int
    specs: dict[str, ExperimentSpec]
    hook: RoundHook | None = None
    running: dict[Any, str] = field(default_factory=dict)  # ObjectRef -> experiment id
    ending: dict[str, _Ending] = field(default_factory=dict)
    retries: dict[str, int] = field(default_factory=dict)

    def submit(self, exp_id: str, completed: Sequence[RoundRecord]) -> None:
        spec = self.specs[exp_id]
        ref = self.remote.remote(spec.to_json(), list(completed), self.channel, self.threads, self.hook)
        self.running[ref] = exp_id

    def cancel_all(self) -> None:
        for ref in self.running:
            with contextlib.suppress(Exception):
                self.ray.cancel(ref, force=True)


def run_ray(
    work: Work,
    driver: Driver,
    *,
    settings: RaySettings,
    fail_fast: bool,
    hook: RoundHook | None = None,
) -> None:
    """Run the experiments of ``work`` (spec, stored rounds) as Ray tasks; ``driver`` writes the store.
    ``hook`` (see :data:`~forgetting.experiments.experiment.RoundHook`) travels to every task.

    Raises:
        MissingDependencyError: Ray is not installed.
        KeyboardInterrupt: on Ctrl-C, after cancelling the tasks and marking the running experiments.
        Exception: under ``fail_fast``, the first experiment's error (the others are cancelled).
    """
    ray = import_ray()
    if settings.num_gpus == 0 and any((s.device or "").startswith("cuda") for s, _ in work):
        logger.warning(
            "device is cuda but [ray] num_gpus = 0: Ray gives the tasks no GPU; set num_gpus (e.g. 1, or "
            "0.25 to share a GPU between four tasks)"
        )
    started_ray = _connect(ray, settings)
    try:
        channel = ray.remote(_channel_class()).options(num_cpus=0, max_restarts=0).remote()
        # Retries are the driver's (a retry must resume after the rounds stored by then), not Ray's.
        options: dict[str, Any] = {
            "num_cpus": settings.num_cpus,
            "num_gpus": settings.num_gpus,
            "max_retries": 0,
            "retry_exceptions": False,
        }
        if settings.runtime_env:
            options["runtime_env"] = dict(settings.runtime_env)
        tasks = _Tasks(
            ray=ray,
            remote=ray.remote(_run_task).options(**options),
            channel=channel,
            threads=max(1, int(settings.num_cpus)),
            max_retries=settings.max_retries,
            specs={spec.id: spec for spec, _ in work},
            hook=hook,
        )
        for spec, completed in work:
            tasks.submit(spec.id, completed)
        logger.info(
            "%d Ray tasks submitted (%s CPU, %s GPU each; up to %d retries)",
            len(work),
            settings.num_cpus,
            settings.num_gpus,
            settings.max_retries,
        )
        try:
            _drive(tasks, driver, fail_fast)
        except BaseException as exc:
            tasks.cancel_all()
            with contextlib.suppress(Exception):  # keep the rounds that already reached the channel
                for message in _take(ray, channel, timeout=10):
                    driver.handle(message)
            driver.interrupt("interrupted" if not isinstance(exc, Exception) else "stopped by fail_fast")
            raise
        finally:
            with contextlib.suppress(Exception):
                ray.kill(channel)
    finally:
        if started_ray:
            ray.shutdown()


def _drive(tasks: _Tasks, driver: Driver, fail_fast: bool) -> None:
    """Poll the channel and the tasks until every experiment has ended (finished, or failed for good)."""
    ray = tasks.ray
    while tasks.running or tasks.ending:
        if tasks.running:
            refs = list(tasks.running)
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=POLL_SECONDS)
        else:
            ready = []
            time.sleep(POLL_SECONDS)
        for message in _take(ray, tasks.channel):
            driver.handle(message)
        now = time.monotonic()
        for ref in ready:
            exp_id = tasks.running.pop(ref)
            try:
                posted, error = ray.get(ref)
                not_before = now
            except ray.exceptions.RayError as exc:  # the worker or its node died, or the result was lost
                posted, error, not_before = [], exc, now + SETTLE_SECONDS
            tasks.ending[exp_id] = _Ending(set(posted), error, not_before, now + ROUNDS_TIMEOUT)
        for exp_id, end in list(tasks.ending.items()):
            missing = end.posted - driver.received.get(exp_id, set())
            lost = exp_id in driver.gaps  # a round went missing: the others will not come either
            if not lost and ((missing and now < end.deadline) or now < end.not_before):
                continue
            del tasks.ending[exp_id]
            if exp_id in driver.terminal:  # failed already (e.g. a round that contradicts the store)
                continue
            if end.error is None and not missing:
                driver.finish(exp_id)
                continue
            error, original = (
                _describe(ray, end.error)
                if end.error is not None
                else (f"rounds {sorted(missing)} never reached the driver", None)
            )
            if tasks.retries.get(exp_id, 0) < tasks.max_retries:
                tasks.retries[exp_id] = tasks.retries.get(exp_id, 0) + 1
                driver.gaps.discard(exp_id)
                completed = driver.store.load_rounds(exp_id, arrays=False)
                logger.warning(
                    "experiment %s failed (%s); retry %d of %d, resuming after %d stored rounds",
                    exp_id,
                    error,
                    tasks.retries[exp_id],
                    tasks.max_retries,
                    len(completed),
                )
                tasks.submit(exp_id, completed)
                continue
            driver.fail(exp_id, error)
            if fail_fast:
                raise original if original is not None else ForgettingError(f"experiment {exp_id}: {error}")
    for message in _take(ray, tasks.channel):  # late progress messages
        driver.handle(message)
